"""The three-line API: score, prune, apply — for our networks and any ``nn.Module``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from earlyprune.allocation import ALLOCATIONS, allocate
from earlyprune.masking import (
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
from earlyprune.placement import resolve_placement
from earlyprune.scoring import METHODS, Batch, Method


def list_methods() -> list[str]:
    """Names of the registered scoring methods."""
    return METHODS.names()


def _method(method: str | Method) -> Method:
    return method if isinstance(method, Method) else METHODS.get(method)


def score(
    model: nn.Module,
    method: str | Method,
    batch: Batch | None = None,
    mask: Mapping[str, Tensor] | None = None,
    seed: int = 0,
) -> Scores:
    """One round of scores (higher = keep) for every prunable weight; the model is untouched.

    Args:
        model: Any ``nn.Module``.
        method: A registered method name (see :func:`list_methods`) or a ``Method``.
        batch: ``(inputs, labels)``; SynFlow only uses the input shape, random/magnitude none.
        mask: Current mask (pruned weights are scored as zero weights); ``None`` keeps all.
        seed: Seed for methods that draw random numbers.
    """
    m = _method(method)
    current = full_mask(model) if mask is None else check_mask(model, mask)
    return m.prepare(model, batch, seed)(current)


def prune(
    model: nn.Module,
    method: str | Method,
    sparsity: float,
    batch: Batch | None = None,
    rounds: int | None = None,
    scope: str = "global",
    invert: bool = False,
    seed: int = 0,
    allocation: str | None = None,
    placement: str | None = None,
) -> Mask:
    """Computes a mask that removes exactly ``round(sparsity · N)`` of the N prunable weights.

    A mask is an allocation (how many weights each layer keeps) plus a placement (which ones).
    By default the method's scores decide both: one global threshold (or, ``scope="layer"``,
    the ``uniform`` allocation). Iterative methods (SynFlow: 100 rounds) rescore the survivors
    each round, round n going from density (1−s)^((n−1)/N) to (1−s)^(n/N). Never modifies the
    model's weights, buffers or mode.

    Args:
        model: Any ``nn.Module``.
        method: Method name or ``Method``.
        sparsity: Fraction of prunable weights to remove, in [0, 1).
        batch: ``(inputs, labels)`` used by data-dependent methods.
        rounds: Rounds of the method's own scoring (default: the method's, 1 for one-shot ones).
        scope: "global" (one threshold across layers) or "layer" (same sparsity per layer).
        invert: Remove the highest-scoring weights instead of the lowest (the paper's ablation);
            it flips the placement's ranking, and the method's own allocation if it is used.
        seed: Seed for methods that draw random numbers.
        allocation: Layer counts from an allocation (``erk``, ``uniform``, ... see
            ``earlyprune.allocation``) or from any scorer's global pruning (``"snip"``); None:
            from ``method`` (for the baselines ``erk``, ``er``, ... their own allocation).
        placement: Which weights each layer keeps: ``random``, ``magnitude`` or any scorer's
            name (top-k within the layer); None: ``method``'s scores.

    Returns:
        Mask: parameter name → bool tensor (True = kept) on the weights' device.
    """
    m = _method(method)
    sparsity = check_sparsity(sparsity)
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; choose one of: {', '.join(SCOPES)}")
    n_rounds = m.rounds if rounds is None else rounds
    if isinstance(n_rounds, bool) or not isinstance(n_rounds, int) or n_rounds < 1:
        raise ValueError(f"rounds must be a positive integer, got {rounds!r}")
    if allocation is None and m.allocation is not None:  # a baseline: its rule, unless
        allocation = "uniform" if scope == "layer" else m.allocation  # scope asks for uniform
        scope = "global"
    placement = m.placement if placement is None else placement
    if allocation is None and placement is None:
        return _prune_scored(model, m, sparsity, batch, n_rounds, scope, invert, seed)
    if allocation is not None and scope != "global":
        raise ValueError(f"scope {scope!r} and allocation {allocation!r} both set the layer "
                         "counts: use allocation='uniform' for the same sparsity per layer")  # fmt: skip
    mask = _nonempty(full_mask(model))
    if allocation is None:  # the method's own layer counts (its global or per-layer pruning)
        own = _prune_scored(model, m, sparsity, batch, n_rounds, scope, invert, seed)
        final = {n: int(torch.count_nonzero(k)) for n, k in own.items()}
    else:
        final = _allocation_counts(model, allocation, sparsity, batch, seed, mask)
    placer = m if placement is None else resolve_placement(placement)
    steps = n_rounds if placement is None else placer.rounds
    sizes = {n: t.numel() for n, t in mask.items()}
    scorer, alive = placer.prepare(model, batch, seed), sum(sizes.values())
    for counts in layer_schedule(final, sizes, steps):
        if sum(counts.values()) == alive:  # nothing to remove this round
            continue
        scores = scorer(mask)
        if invert:
            scores = {name: -s for name, s in scores.items()}
        mask = select_counts(scores, counts, mask)
        alive = sum(counts.values())
    return mask


def _nonempty(mask: Mask) -> Mask:
    if not mask:
        raise ValueError("the model has no Conv or Linear weights to prune")
    return mask


def _allocation_counts(
    model: nn.Module, name: str, sparsity: float, batch: Batch | None, seed: int, mask: Mask
) -> dict[str, int]:
    """Final kept counts per layer of a named allocation rule or of a scorer's global pruning."""
    total = sum(t.numel() for t in mask.values())
    if name in ALLOCATIONS:
        counts = allocate(
            name, [tuple(t.shape) for t in mask.values()], total - round(sparsity * total)
        )
        return dict(zip(mask, counts, strict=True))
    if name not in METHODS:
        valid = [*ALLOCATIONS.names(), *(n for n in METHODS.names() if n not in ALLOCATIONS)]
        raise ValueError(f"unknown allocation {name!r}; choose one of: {', '.join(valid)}")
    own = prune(model, METHODS.get(name), sparsity, batch=batch, seed=seed)
    return {n: int(torch.count_nonzero(k)) for n, k in own.items()}


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
    mask = _nonempty(full_mask(model))
    total = sum(t.numel() for t in mask.values())
    schedule = density_schedule(sparsity, n_rounds, total)
    if schedule[-1] == total:
        return mask
    scorer = m.prepare(model, batch, seed)
    alive = total
    for n, n_keep in enumerate(schedule, start=1):
        if n_keep == alive:  # nothing to remove this round: rescoring cannot change the mask
            continue
        scores = scorer(mask)
        if invert:
            scores = {name: -s for name, s in scores.items()}
        density = (1 - sparsity) ** (n / n_rounds)
        mask = select(scores, n_keep, mask, scope, density=density)
        alive = n_keep
    return mask


def save_mask(mask: Mapping[str, Tensor], path: str | os.PathLike[str]) -> None:
    """Writes a mask atomically (temp file + rename) as a torch file of bool tensors."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save({n: m.detach().to("cpu", torch.bool) for n, m in mask.items()}, tmp)
    os.replace(tmp, path)


def load_mask(path: str | os.PathLike[str]) -> Mask:
    """Reads a mask written by :func:`save_mask` (``weights_only=True``: no code is executed)."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"mask file not found: {path}") from None
    except Exception as exc:  # pickle errors, truncation, refused globals
        raise ValueError(f"cannot read mask file {path}: {exc.__class__.__name__}: {exc}") from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in data.items()
    ):
        raise ValueError(f"{path} does not hold a mask (dict of name → bool tensor)")
    return {k: v.to(torch.bool) for k, v in data.items()}


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
