"""The three-line API: score, prune, apply — for our networks and any ``nn.Module``."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from earlyprune.core.scalars import plain_number
from earlyprune.masks.connectivity import check_connected
from earlyprune.masks.mask import (
    SCOPES,
    Mask,
    Scores,
    check_mask,
    check_sparsity,
    density_schedule,
    full_mask,
    layer_schedule,
    prunable,
    select,
    select_counts,
)
from earlyprune.methods.allocation import ALLOCATIONS, allocate
from earlyprune.methods.placement import resolve_placement
from earlyprune.methods.scoring import BUILT_IN, METHODS, Batch, Method, method_from_function


def list_methods() -> list[str]:
    """Names of the registered scoring methods."""
    return METHODS.names()


def _method(method: str | Method | Callable[..., Scores]) -> Method:
    """A ``Method`` from a registered name, a ``Method``, or a user scoring function."""
    if isinstance(method, Method):
        return method
    if callable(method):
        name = getattr(method, "__name__", type(method).__name__)
        return method_from_function(name, method, f"user scoring function {name}")
    return METHODS.get(method)


def score(
    model: nn.Module,
    method: str | Method | Callable[..., Scores],
    batch: Batch | None = None,
    mask: Mapping[str, Tensor] | None = None,
    seed: int = 0,
) -> Scores:
    """One round of scores (higher = keep) for every prunable weight; the model is untouched.

    Args:
        model: Any ``nn.Module``.
        method: A registered method name (see :func:`list_methods`), a ``Method``, or your own
            scoring function ``f(model, batch, mask, seed)`` or ``f(model, batch)`` returning
            ``dict[str, Tensor]`` over ``prunable(model)`` (higher = keep).
        batch: ``(inputs, labels)``; SynFlow only uses the input shape (without a batch: the
            shape the network was built for, see :func:`prune`), random/magnitude none.
        mask: Current mask (pruned weights are scored as zero weights); ``None`` keeps all.
        seed: Seed for methods that draw random numbers.
    """
    m = _method(method)
    current = full_mask(model) if mask is None else check_mask(model, mask)
    scorer = _prepare(m, model, batch, seed)
    return scorer(current, None) if m.budgeted else scorer(current)


def prune(
    model: nn.Module,
    method: str | Method | Callable[..., Scores],
    sparsity: float,
    batch: Batch | None = None,
    rounds: int | None = None,
    scope: str = "global",
    invert: bool = False,
    seed: int = 0,
    allocation: str | None = None,
    placement: str | None = None,
    allow_disconnected: bool = False,
) -> Mask:
    """Computes a mask that removes exactly ``round(sparsity · N)`` of the N prunable weights.

    A mask is an allocation (how many weights each layer keeps) plus a placement (which ones).
    By default the method's scores decide both: one global threshold (or, ``scope="layer"``,
    the ``uniform`` allocation). Iterative methods (SynFlow: 100 rounds) rescore the survivors
    each round, round n going from density (1−s)^((n−1)/N) to (1−s)^(n/N). Never modifies the
    model's weights, buffers or mode.

    Args:
        model: Any ``nn.Module``.
        method: Method name, ``Method``, or a scoring function ``f(model, batch, mask, seed)``
            (rescored with the current mask every round) or ``f(model, batch)``.
        sparsity: Fraction of prunable weights to remove, in [0, 1).
        batch: ``(inputs, labels)`` used by data-dependent methods. Data-free ones (SynFlow,
            NTK-SAP, PHEW, ...) only need the input shape: without a batch they take it from
            ``model.input_shape`` (set by ``ep.create_model``) or a first ``Linear`` layer.
        rounds: Rounds of the method's own scoring (default: the method's, 1 for one-shot ones).
        scope: "global" (one threshold across layers) or "layer" (same sparsity per layer).
        invert: Remove the highest-scoring weights instead of the lowest (the paper's ablation);
            it flips the placement's ranking, and the method's own allocation if it is used.
        seed: Seed for methods that draw random numbers.
        allocation: Layer counts from an allocation (``erk``, ``uniform``, ... see
            ``earlyprune.methods.allocation``) or from any scorer's global pruning (``"snip"``); None:
            from ``method`` (for the baselines ``erk``, ``er``, ... their own allocation).
        placement: Which weights each layer keeps: ``random``, ``magnitude`` or any scorer's
            name (top-k within the layer); None: ``method``'s scores.
        allow_disconnected: Return a mask even if it keeps no weight, or if its empty layers
            leave no path from input to output (see :mod:`earlyprune.masks.connectivity`).

    Returns:
        Mask: parameter name → bool tensor (True = kept) on the weights' device.

    Raises:
        ValueError: For bad arguments, NaN scores, or a degenerate mask (unless allowed).

    Warns:
        RuntimeWarning: One line when equal scores straddle the final threshold, so that some
            of them are removed by network order rather than by score.
    """
    m = _method(method)
    # np.float64(0.9), torch.tensor(3): the plain numbers they hold.
    sparsity, seed, rounds = plain_number(sparsity), plain_number(seed), plain_number(rounds)
    sparsity = check_sparsity(sparsity)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; choose one of: {', '.join(SCOPES)}")
    n_rounds = m.rounds if rounds is None else rounds
    if isinstance(n_rounds, bool) or not isinstance(n_rounds, int) or n_rounds < 1:
        raise ValueError(f"rounds must be a positive integer, got {rounds!r}")
    if allocation is None and m.allocation is not None:  # a baseline: its rule, unless
        allocation = "uniform" if scope == "layer" else m.allocation  # scope asks for uniform
        scope = "global"
    placement = m.placement if placement is None else placement
    if allocation is not None and scope != "global":
        raise ValueError(
            f"scope {scope!r} and allocation {allocation!r} both set the layer "
            "counts: use allocation='uniform' for the same sparsity per layer"
        )
    mask = full_mask(model)
    if not mask:
        raise ValueError("the model has no Conv or Linear weights to prune")
    total = sum(t.numel() for t in mask.values())
    if round(sparsity * total) == 0:
        return mask
    if batch is not None and isinstance(batch[0], Tensor):
        shape = tuple(batch[0].shape[1:])
    else:
        shape = known_input_shape(model)
    if not allow_disconnected and total - round(sparsity * total) == 0:  # nothing can be kept
        check_connected(model, {n: torch.zeros_like(t) for n, t in mask.items()}, shape)
    if allocation is None and placement is None:
        mask = _prune_scored(model, m, sparsity, batch, n_rounds, scope, invert, seed)
    else:
        if allocation is None:  # the method's own layer counts (its global or per-layer pruning)
            own = _prune_scored(model, m, sparsity, batch, n_rounds, scope, invert, seed)
            final = {n: int(torch.count_nonzero(k)) for n, k in own.items()}
        else:
            final = _allocation_counts(model, allocation, sparsity, batch, seed, mask)
        placer = m if placement is None else resolve_placement(placement)
        steps = n_rounds if placement is None else placer.rounds
        mask = _place(model, placer, batch, seed, final, steps, invert, mask)
    if not allow_disconnected:
        check_connected(model, mask, shape)
    return mask


def _prune_scored(
    model: nn.Module,
    m: Method,
    sparsity: float,
    batch: Batch | None,
    n_rounds: int,
    scope: str,
    invert: bool,
    seed: int,
) -> Mask:
    """The method's scores decide allocation and placement: global (or per-layer) selection."""
    mask = full_mask(model)
    total = sum(t.numel() for t in mask.values())
    schedule = density_schedule(sparsity, n_rounds, total)
    scorer = _prepare(m, model, batch, seed)
    alive = total
    everything = full_mask(model) if m.revive else None
    for n, n_keep in enumerate(schedule, start=1):
        if n_keep == alive:  # nothing to remove this round: rescoring cannot change the mask
            continue
        scores = scorer(mask, n_keep) if m.budgeted else scorer(mask)
        if invert:
            scores = {name: -s for name, s in scores.items()}
        density = (1 - sparsity) ** (n / n_rounds)
        # A reviving method (FORCE) selects among all weights each round, not only survivors.
        before, mask = mask, select(scores, n_keep, everything or mask, scope, density=density)
        alive = n_keep
        if n == n_rounds:
            warn_straddling_ties(scores, before, mask, scope)
    return mask


def _place(
    model: nn.Module,
    placer: Method,
    batch: Batch | None,
    seed: int,
    final: dict[str, int],
    steps: int,
    invert: bool,
    mask: Mask,
) -> Mask:
    """Each layer keeps its ``final`` count of the placer's top scores, over ``steps`` rounds."""
    sizes = {n: t.numel() for n, t in mask.items()}
    scorer, alive = _prepare(placer, model, batch, seed), sum(sizes.values())
    schedule = layer_schedule(final, sizes, steps)
    for n, counts in enumerate(schedule, start=1):
        if sum(counts.values()) == alive:  # nothing to remove this round
            continue
        scores = scorer(mask, sum(counts.values())) if placer.budgeted else scorer(mask)
        if invert:
            scores = {name: -s for name, s in scores.items()}
        before, mask = mask, select_counts(scores, counts, mask)
        alive = sum(counts.values())
        if n == len(schedule):
            warn_straddling_ties(scores, before, mask, "layer")
    return mask


def _prepare(m: Method, model: nn.Module, batch: Batch | None, seed: int) -> Callable[..., Scores]:
    """``m.prepare(...)``; for a method not shipped with the package, checked to edit nothing.

    Built-in scorers are held to leaving the model bit for bit unchanged by a test that runs
    every one of them, so they pay nothing here. Any other scorer runs against a copy of the
    model's state taken first: after ``prepare`` and after every call, its parameters are
    compared with the copy, and everything (parameters, gradients, buffers, training mode) is
    put back. Changed parameters are refused (the scores were computed on other weights);
    gradients, buffers and mode are only restored, as a forward or backward pass in training
    mode changes them innocently (BatchNorm statistics, ``loss.backward()``).
    """
    if batch is None and not m.needs_batch:  # data-free: the input shape is all it reads
        batch = shape_only_batch(model)
    if BUILT_IN.get(m.name) is m:
        return m.prepare(model, batch, seed)
    saved = _ModelState(model)
    with saved.checked(m.name):
        inner = m.prepare(model, batch, seed)

    def scorer(*args: object) -> Scores:
        with saved.checked(m.name):
            return inner(*args)

    return scorer


#: Inputs per output unit of the stand-in batch: as many as a run's scoring batch holds
#: (``RunSpec.scoring_per_class``), so NTK-SAP draws as many Gaussian inputs as in a run.
STAND_IN_PER_CLASS = 10


def known_input_shape(model: nn.Module) -> tuple[int, ...] | None:
    """The shape of one input of ``model`` (no batch dimension), where it can be known.

    Networks from :func:`earlyprune.create_model` carry it (``model.input_shape``); a network
    whose first prunable layer is a ``Linear`` takes ``(in_features,)``. None otherwise.
    """
    shape = getattr(model, "input_shape", None)
    if (
        isinstance(shape, tuple | list)
        and shape
        and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)
    ):
        return tuple(shape)
    first = next(iter(prunable(model).values()), None)
    for module in model.modules():
        if isinstance(module, nn.Linear) and module.weight is first:
            return (module.in_features,)
    return None


def shape_only_batch(model: nn.Module) -> Batch | None:
    """A stand-in batch for data-free methods: shapes only, on the ``meta`` device (no values).

    ``STAND_IN_PER_CLASS`` inputs per output of the last prunable layer, the size of a run's
    scoring batch. A method that reads values from it fails at once instead of scoring on
    made-up data. None when the input shape cannot be known (the method then asks for a batch).
    """
    shape = known_input_shape(model)
    weights = list(prunable(model).values())
    if shape is None or not weights:
        return None
    n = STAND_IN_PER_CLASS * weights[-1].shape[0]
    x = torch.empty((n, *shape), device="meta")
    return x, torch.empty(n, dtype=torch.long, device="meta")


class _ModelState:
    """A copy of a model's parameters, gradients, buffers and modes, to check and restore."""

    def __init__(self, model: nn.Module):
        self.modes = [(mod, mod.training) for mod in model.modules()]
        self.params = [
            (mod, name, p, p.detach().clone(), _copy(p.grad), p.requires_grad)
            for mod in model.modules()
            for name, p in mod.named_parameters(recurse=False)
        ]
        self.buffers = [
            (mod, name, b, b.detach().clone())
            for mod in model.modules()
            for name, b in mod.named_buffers(recurse=False)
        ]
        self.names = {id(p): n for n, p in model.named_parameters()}

    @contextlib.contextmanager
    def checked(self, method: str) -> Iterator[None]:
        """Runs the block, restores the state, and refuses the block if it edited a parameter."""
        try:
            yield
        finally:
            changed = self.restore()
        if changed:
            more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
            raise ValueError(
                f"scoring method {method!r} changed the model's weights ({', '.join(changed[:3])}"
                f"{more}); scoring must leave them as they are: work on a copy "
                "(copy.deepcopy(model)) or on detached tensors (the model was put back)"
            )

    @torch.no_grad()
    def restore(self) -> list[str]:
        """Puts everything back; returns the names of the parameters that had changed."""
        changed = []
        for mod, name, p, value, grad, requires_grad in self.params:
            now = mod._parameters.get(name)
            moved = p.shape != value.shape or p.dtype != value.dtype or p.device != value.device
            if now is not p or moved or not _same(p, value):
                changed.append(self.names.get(id(p), name))
                mod._parameters[name] = p  # a replaced Parameter object: the original comes back
                if moved:  # ``p.data = ...`` swapped the tensor under the Parameter
                    p.data = value.clone()
                else:
                    p.copy_(value)
            p.grad = _copy(grad)
            p.requires_grad_(requires_grad)
        for mod, name, b, value in self.buffers:
            mod._buffers[name] = b
            if b.shape != value.shape or b.dtype != value.dtype or b.device != value.device:
                b.data = value.clone()
            elif not _same(b, value):
                b.copy_(value)
        for mod, mode in self.modes:
            mod.training = mode
        return changed


def _copy(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.detach().clone()


_SAME_SIZE_INT = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _same(a: Tensor, b: Tensor) -> bool:
    """Bit for bit equal (``torch.equal`` calls NaN unequal to itself and -0.0 equal to 0.0)."""
    bits = _SAME_SIZE_INT.get(a.element_size())
    if not a.is_floating_point() or bits is None:
        return torch.equal(a, b)
    return torch.equal(a.reshape(-1).view(bits), b.reshape(-1).view(bits))


def _allocation_counts(
    model: nn.Module, name: str, sparsity: float, batch: Batch | None, seed: int, mask: Mask
) -> dict[str, int]:
    """Final kept counts per layer of a named allocation rule or of a scorer's global pruning."""
    total = sum(t.numel() for t in mask.values())
    if name in ALLOCATIONS:
        shapes = [tuple(t.shape) for t in mask.values()]
        counts = allocate(name, shapes, total - round(sparsity * total))
        return dict(zip(mask, counts, strict=True))
    if name not in METHODS:
        valid = [*ALLOCATIONS.names(), *(n for n in METHODS.names() if n not in ALLOCATIONS)]
        raise ValueError(f"unknown allocation {name!r}; choose one of: {', '.join(valid)}")
    own = prune(model, METHODS.get(name), sparsity, batch=batch, seed=seed, allow_disconnected=True)
    return {n: int(torch.count_nonzero(k)) for n, k in own.items()}


def warn_straddling_ties(scores: Scores, before: Mask, after: Mask, scope: str) -> None:
    """Warns (one line) when equal scores were split by the threshold: some removed, some kept.

    Such weights were told apart by network order, not by the method (e.g. constant or
    infinite scores, or many zero gradients at a high sparsity).
    """
    groups = [[n] for n in after] if scope == "layer" else [list(after)]
    for names in groups:
        kept = [scores[n][after[n]] for n in names if bool(after[n].any())]
        gone = [scores[n][before[n] & ~after[n]] for n in names]
        gone = [g for g in gone if g.numel()]
        if not kept or not gone:
            continue
        low = min(float(k.min()) for k in kept) + 0.0  # + 0.0: a tie at -0.0 prints as 0
        high = max(float(g.max()) for g in gone)
        if low == high:  # the threshold itself was shared by a kept and a removed weight
            tied = sum(int((scores[n][before[n]] == low).sum()) for n in names)
            removed = sum(int((g == low).sum()) for g in gone)
            where = f" in {names[0]}" if scope == "layer" else ""
            warnings.warn(
                f"{tied:,} weights{where} share the threshold score {low:g}; {removed:,} of them "
                "were removed by network order, not by score",
                RuntimeWarning,
                stacklevel=4,  # warn_straddling_ties ← _prune_scored or _place ← prune ← caller
            )


def save_mask(mask: Mapping[str, Tensor], path: str | os.PathLike[str]) -> None:
    """Writes a mask atomically (temp file + rename) as a torch file of bool tensors."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save({n: m.detach().to("cpu", torch.bool) for n, m in mask.items()}, tmp)
    os.replace(tmp, path)


def load_mask(path: str | os.PathLike[str]) -> Mask:
    """Reads a mask written by :func:`save_mask` (``weights_only=True``: no code is executed).

    Raises:
        ValueError: One short line if the file is missing, unreadable, or holds anything but a
            dict of name → bool tensor (a checkpoint or state_dict of float weights included).
    """
    not_a_mask = f"{path} does not hold a mask (dict of name → bool tensor)"
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickles before refusing them
            warnings.simplefilter("ignore")
            data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"mask file not found: {path}") from None
    except Exception as exc:  # pickle errors, truncation, refused globals: torch's text is long
        raise ValueError(
            f"{not_a_mask}: it is not a file written by ep.save_mask ({exc.__class__.__name__})"
        ) from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in data.items()
    ):
        raise ValueError(f"{not_a_mask}: found {type(data).__name__}")
    wrong = [k for k, v in data.items() if v.dtype != torch.bool]
    if wrong:  # float weights (a state_dict) are not "keep" flags
        kind = str(data[wrong[0]].dtype).replace("torch.", "")
        raise ValueError(f"{not_a_mask}: {wrong[0]!r} is {kind} (a checkpoint or state_dict?)")
    return dict(data)


def to_torch_prune(model: nn.Module, mask: Mapping[str, Tensor]) -> None:
    """Hands ``mask`` to ``torch.nn.utils.prune`` (``custom_from_mask``) on every prunable weight.

    Afterwards the model follows torch's pruning API (``weight_orig`` + ``weight_mask``);
    ``torch.nn.utils.prune.remove`` makes it permanent.
    """
    from torch.nn.utils import prune as torch_prune

    checked = check_mask(model, mask)
    modules = dict(model.named_modules())
    for name, m in checked.items():
        module_name, _, attr = name.rpartition(".")
        torch_prune.custom_from_mask(modules[module_name], attr, m)


__all__ = [
    "list_methods",
    "load_mask",
    "prunable",
    "prune",
    "save_mask",
    "score",
    "to_torch_prune",
]
