"""The three-line API: score, prune, apply — for our networks and any ``nn.Module``."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn

from earlyprune.masks.connectivity import check_connected
from earlyprune.masks.io import load_mask, save_mask, to_torch_prune  # noqa: F401  (ep.* names)
from earlyprune.masks.mask import (
    Mask,
    Scores,
    check_mask,
    density_schedule,
    full_mask,
    layer_schedule,
    prunable,
    select,
    select_counts,
)
from earlyprune.masks.structure import parse_structure
from earlyprune.masks.ties import warn_straddling_ties
from earlyprune.methods.allocation import ALLOCATIONS, allocate
from earlyprune.methods.arguments import checked_numbers, layout
from earlyprune.methods.micro_batch import micro_batched
from earlyprune.methods.placement import resolve_placement
from earlyprune.methods.prepare import guarded_prepare, known_input_shape
from earlyprune.methods.scoring import METHODS, Batch, Method, method_from_function
from earlyprune.methods.structured import check_nm_sparsity, structured_mask


def list_methods() -> list[str]:
    """Names of the registered scoring methods."""
    return METHODS.names()


def _method(method: str | Method | Callable[..., Scores], micro_batch: int | None = None) -> Method:
    """A ``Method`` from a name, a ``Method`` or a user function; in micro-batches if asked."""
    if isinstance(method, Method):
        m = method
    elif callable(method):
        name = getattr(method, "__name__", type(method).__name__)
        m = method_from_function(name, method, f"user scoring function {name}")
    else:
        m = METHODS.get(method)
    return m if micro_batch is None else micro_batched(m, micro_batch)


def score(
    model: nn.Module,
    method: str | Method | Callable[..., Scores],
    batch: Batch | None = None,
    mask: Mapping[str, Tensor] | None = None,
    seed: int = 0,
    micro_batch: int | None = None,
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
        micro_batch: Score the batch in chunks of this many examples (see
            :mod:`earlyprune.methods.micro_batch`); None: the whole batch at once.
    """
    m = _method(method, micro_batch)
    current = full_mask(model) if mask is None else check_mask(model, mask)
    scorer = guarded_prepare(m, model, batch, seed)
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
    structure: str = "unstructured",
    micro_batch: int | None = None,
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
        structure: ``unstructured``, ``nm:N:M`` (sparsity must be 1 − N/M), ``fanin`` or
            ``channel``: the counts as without it, placed within the structure (see
            :mod:`earlyprune.methods.structured`); the removed count is then not exact.
        micro_batch: ``method`` scores the batch in chunks of this many examples (a named
            ``placement``/``allocation`` scores whole); equal scores without BatchNorm.

    Returns:
        Mask: parameter name → bool tensor (True = kept) on the weights' device.

    Raises:
        ValueError: For bad arguments, NaN scores, or a degenerate mask (unless allowed).

    Warns:
        RuntimeWarning: One line when equal scores straddle the final threshold, so that some
            of them are removed by network order rather than by score.
    """
    m = _method(method, micro_batch)
    sparsity, seed, n_rounds = checked_numbers(m, sparsity, seed, rounds, scope)
    allocation, placement, scope = layout(m, allocation, placement, scope)
    st = parse_structure(structure)
    args = (model, m, sparsity, batch, n_rounds, scope, invert, seed, allocation, placement)
    if st.kind == "unstructured":
        return _unstructured(*args, allow_disconnected)
    check_nm_sparsity(st, sparsity)
    counts = None if st.kind == "nm" else _kept(_unstructured(*args, True))
    placer = m if placement is None else resolve_placement(placement)
    mask = structured_mask(model, placer, st, batch, seed, counts, invert)
    if not allow_disconnected:
        shape = tuple(batch[0].shape[1:]) if _has_inputs(batch) else known_input_shape(model)
        check_connected(model, mask, shape)
    return mask


def _unstructured(
    model: nn.Module,
    m: Method,
    sparsity: float,
    batch: Batch | None,
    n_rounds: int,
    scope: str,
    invert: bool,
    seed: int,
    allocation: str | None,
    placement: str | None,
    allow_disconnected: bool,
) -> Mask:
    """``prune`` without a structure: exactly ``round(sparsity · N)`` weights removed."""
    mask = full_mask(model)
    if not mask:
        raise ValueError("the model has no Conv or Linear weights to prune")
    total = sum(t.numel() for t in mask.values())
    if round(sparsity * total) == 0:
        return mask
    shape = tuple(batch[0].shape[1:]) if _has_inputs(batch) else known_input_shape(model)
    if not allow_disconnected and total - round(sparsity * total) == 0:  # nothing can be kept
        check_connected(model, {n: torch.zeros_like(t) for n, t in mask.items()}, shape)
    if allocation is None and placement is None:
        mask = _prune_scored(model, m, sparsity, batch, n_rounds, scope, invert, seed)
    elif allocation is None:  # the method's own layer counts (its global or per-layer pruning)
        own = _prune_scored(model, m, sparsity, batch, n_rounds, scope, invert, seed)
        final = {n: int(torch.count_nonzero(k)) for n, k in own.items()}
        mask = _place(model, m, placement, batch, seed, final, n_rounds, invert, mask)
    else:
        final = _allocation_counts(model, allocation, sparsity, batch, seed, mask)
        mask = _place(model, m, placement, batch, seed, final, n_rounds, invert, mask)
    if not allow_disconnected:
        check_connected(model, mask, shape)
    return mask


def _kept(mask: Mask) -> dict[str, int]:
    return {n: int(torch.count_nonzero(k)) for n, k in mask.items()}


def _has_inputs(batch: Batch | None) -> bool:
    return batch is not None and isinstance(batch[0], Tensor)


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
    scorer = guarded_prepare(m, model, batch, seed)
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
    m: Method,
    placement: str | None,
    batch: Batch | None,
    seed: int,
    final: dict[str, int],
    n_rounds: int,
    invert: bool,
    mask: Mask,
) -> Mask:
    """Each layer keeps its ``final`` count of the top scores of ``placement`` (None: ``m``'s).

    ``m``'s own scores place over its ``n_rounds``; a named placement over its own rounds.
    """
    placer = m if placement is None else resolve_placement(placement)
    steps = n_rounds if placement is None else placer.rounds
    sizes = {n: t.numel() for n, t in mask.items()}
    scorer, alive = guarded_prepare(placer, model, batch, seed), sum(sizes.values())
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


__all__ = [
    "list_methods",
    "load_mask",
    "prunable",
    "prune",
    "save_mask",
    "score",
    "to_torch_prune",
]
