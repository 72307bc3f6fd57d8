"""Masks: which prunable weights are kept, chosen from scores with exact counts.

A ``Mask`` is ``dict[str, BoolTensor]`` over prunable parameter names (True = kept). Selection
lives here and only here: global or per-layer scope, exact removal counts with deterministic
tie-breaking, the iterative density schedule. Scorers know nothing of sparsity.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor

# Re-exported: the basics were defined here before base.py.
from earlyprune.masks.base import (
    NOT_BOOL,
    Mask,
    Scores,
    apply_mask,
    check_mask,
    check_sparsity,
    full_mask,
    prunable,
)
from earlyprune.masks.kernels import kth_smallest

__all__ = [
    "NOT_BOOL",
    "SCOPES",
    "Mask",
    "Scores",
    "apply_mask",
    "check_mask",
    "check_sparsity",
    "density_schedule",
    "full_mask",
    "layer_schedule",
    "prunable",
    "select",
    "select_counts",
]

SCOPES = ("global", "layer")


def density_schedule(sparsity: float, rounds: int, total: int) -> list[int]:
    """How many weights survive after each round of iterative pruning.

    Round n prunes from density (1−s)^((n−1)/N) to (1−s)^(n/N); the last round lands exactly on
    ``total − round(s·total)`` survivors.

    Args:
        sparsity: Final fraction removed.
        rounds: Number of rounds N ≥ 1.
        total: Number of prunable weights.

    Returns:
        Survivor count after rounds 1..N (non-increasing).
    """
    if rounds < 1:
        raise ValueError(f"rounds must be ≥ 1, got {rounds}")
    final_keep = total - round(sparsity * total)
    counts = [total - round((1 - (1 - sparsity) ** (n / rounds)) * total) for n in range(1, rounds)]
    counts.append(final_keep)
    return [max(c, final_keep) for c in counts]


def _check_scores(scores: Mapping[str, Tensor], mask: Mask) -> None:
    for name, m in mask.items():
        s = scores.get(name)
        if s is None:
            raise ValueError(f"scores lack an entry for prunable weight {name!r}")
        if tuple(s.shape) != tuple(m.shape):
            raise ValueError(
                f"scores[{name!r}] has shape {tuple(s.shape)}, expected {tuple(m.shape)}"
            )
        # A sum is NaN whenever an entry is, and it only reads the tensor (no bool temporary);
        # the exact check runs only when the sum is not finite.
        if s.is_floating_point() and not math.isfinite(float(s.sum())) and torch.isnan(s).any():
            raise ValueError(f"scores[{name!r}] contains NaN")


#: Below this many survivors a selection over all of them is cheap; above it a sampled bound
#: first narrows the candidates to about the smaller side of the cut.
_DIRECT = 1 << 17
#: Roughly how many entries the bound's strided sample reads.
_SAMPLE = 1 << 17


def _survivors(
    scores: list[Tensor], alive: list[Tensor], total: int, n_remove: int
) -> list[Tensor]:
    """New alive vectors once the ``n_remove`` lowest of the ``total`` alive scores are removed.

    The cut is the k-th smallest alive score; ties at it go to the earlier tensor, then the
    lower index. It is found among candidates on the smaller side of the cut (the removed ones
    when fewer than half go, else the kept ones): a sampled bound only decides which alive
    scores are compared at all, so the result never depends on it, and when the sample misleads
    (too few candidates) every survivor becomes a candidate.
    """
    if n_remove <= 0 or n_remove >= total:
        return [a.clone() if n_remove <= 0 else torch.zeros_like(a) for a in alive]
    low = 2 * n_remove <= total
    rank = n_remove if low else total - n_remove + 1  # counted from the low or the high end
    bound = _sampled_bound(scores, alive, rank / total, low) if total > _DIRECT else None
    cand = _candidates(scores, alive, bound, low)
    if low and 16 * n_remove <= total:  # an iterative round: few go, mark them by index
        index = [torch.nonzero(c).flatten() for c in cand]
        if sum(len(i) for i in index) < rank:  # the sample misled us: no shortcut this time
            index = [torch.nonzero(a).flatten() for a in alive]
        vals = torch.cat([s[i] for s, i in zip(scores, index, strict=True)])
        threshold = kth_smallest(vals, n_remove)  # the device's fastest exact kernel
        removed = vals < threshold
        need = n_remove - int(removed.sum())
        if need > 0:  # candidates are in network then row-major order: earlier ties go first
            removed[torch.nonzero(vals == threshold).flatten()[:need]] = True
        out = [a.clone() for a in alive]
        for new, i, r in zip(out, index, removed.split([len(i) for i in index]), strict=True):
            new[i[r]] = False
        return out
    # Many go (one-shot pruning): compare densely, with no index list as long as the weights.
    if bound is not None and sum(int(torch.count_nonzero(c)) for c in cand) < rank:
        cand = alive  # the sample misled us: no shortcut this time
    vals = torch.cat([s[c] for s, c in zip(scores, cand, strict=True)])
    threshold = kth_smallest(vals, rank if low else len(vals) - rank + 1)
    below = int((vals < threshold).sum()) if low else total - int((vals >= threshold).sum())
    need, ties = n_remove - below, int((vals == threshold).sum())  # ties to remove, ties in all
    out = [
        (torch.ge if need == 0 else torch.gt)(s, threshold).logical_and_(a)
        for s, a in zip(scores, alive, strict=True)
    ]
    if 0 < need < ties:  # the first ``need`` ties go, the later ones stay
        for s, a, new in zip(scores, alive, out, strict=True):
            tied = torch.nonzero(torch.eq(s, threshold).logical_and_(a)).flatten()
            new[tied[max(need, 0) :]] = True
            need -= len(tied)
    return out


def _candidates(
    scores: list[Tensor], alive: list[Tensor], bound: Tensor | None, low: bool
) -> list[Tensor]:
    """Alive entries whose score is at most (``low``) or at least ``bound``, per tensor."""
    if bound is None:
        return alive
    compare = torch.le if low else torch.ge
    return [compare(s, bound).logical_and_(a) for s, a in zip(scores, alive, strict=True)]


def _sampled_bound(scores: list[Tensor], alive: list[Tensor], q: float, low: bool) -> Tensor | None:
    """A score with probably a little more than a share ``q`` of the alive scores at or below
    it (``low``) or at or above it; None when no useful bound exists.

    Reads a strided sample of the alive scores and goes a few binomial standard deviations past
    the ``q`` quantile.
    """
    stride = max(1, sum(s.numel() for s in scores) // _SAMPLE)
    sample = torch.cat([s[::stride][a[::stride]] for s, a in zip(scores, alive, strict=True)])
    m = sample.numel()
    rank = math.ceil(q * m + 5.0 * math.sqrt(q * m) + 16)
    if m < 1024 or rank >= m:
        return None
    return kth_smallest(sample, rank if low else m - rank + 1)


def select(
    scores: Mapping[str, Tensor],
    n_keep: int,
    mask: Mask,
    scope: str = "global",
    density: float | None = None,
) -> Mask:
    """Keeps the ``n_keep`` highest-scoring weights among those ``mask`` still keeps.

    Ties are broken deterministically: among equal scores, weights earlier in network order
    (then row-major order) are removed first. Pruned weights are never revived.

    Args:
        scores: Higher = keep, same keys and shapes as ``mask``.
        n_keep: Total survivors wanted (≤ current survivors).
        mask: Current mask.
        scope: "global" (one threshold across layers) or "layer" (every layer keeps ``density``
            of its original size, rounded up or down so that the total is exactly ``n_keep``).
        density: Target density of this round for ``scope="layer"`` (default ``n_keep / N``).
            Targets are taken from each layer's original size, not its survivors, so rounding
            errors do not accumulate over iterative rounds.

    Returns:
        A new mask.
    """
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; choose one of: {', '.join(SCOPES)}")
    _check_scores(scores, mask)
    names = list(mask)
    flat = [scores[n].reshape(-1) for n in names]
    alive = [mask[n].reshape(-1).to(s.device) for n, s in zip(names, flat, strict=True)]
    counts = [int(torch.count_nonzero(a)) for a in alive]  # a bool sum would cast to int64
    total_alive = sum(counts)
    n_remove = total_alive - n_keep
    if n_remove < 0:
        raise ValueError(f"cannot keep {n_keep} weights when only {total_alive} survive")
    if scope == "global":
        kept = _survivors(flat, alive, total_alive, n_remove)
    else:
        removals = _layer_removals(mask, counts, n_keep, density)
        kept = [
            _survivors([s], [a], c, r)[0]
            for s, a, c, r in zip(flat, alive, counts, removals, strict=True)
        ]
    return {
        n: k.to(mask[n].device).reshape(mask[n].shape) for n, k in zip(names, kept, strict=True)
    }


def _layer_removals(mask: Mask, alive: list[int], n_keep: int, density: float | None) -> list[int]:
    """Per-layer removal counts for ``scope="layer"``.

    Each layer keeps ⌊d·n_l⌋ or ⌈d·n_l⌉ of its n_l weights (d the round's target density),
    the extra units going to the largest fractional parts, capped by its survivors, so the
    total is exactly ``n_keep``.
    """
    sizes = [m.numel() for m in mask.values()]
    d = n_keep / max(sum(sizes), 1) if density is None else density
    quotas = [d * n for n in sizes]
    keep = [min(math.floor(q), a) for q, a in zip(quotas, alive, strict=True)]
    order = sorted(range(len(sizes)), key=lambda i: (-(quotas[i] - math.floor(quotas[i])), i))
    extra = n_keep - sum(keep)
    for pass_ in range(2):  # first the largest remainders, then any layer with room left
        for i in order:
            if extra <= 0:
                break
            room = alive[i] - keep[i]
            if room > 0 and (pass_ == 1 or keep[i] < math.ceil(quotas[i])):
                add = min(room, extra) if pass_ == 1 else 1
                keep[i] += add
                extra -= add
    return [a - k for a, k in zip(alive, keep, strict=True)]


def select_counts(scores: Mapping[str, Tensor], counts: Mapping[str, int], mask: Mask) -> Mask:
    """Each layer keeps its ``counts[name]`` highest-scoring weights among those ``mask`` keeps.

    The placement half of a mask: the same exact selection and tie rule as :func:`select`
    (earlier index removed first among equal scores), one layer at a time.
    """
    _check_scores(scores, mask)
    out: Mask = {}
    for name, m in mask.items():
        alive = m.reshape(-1).to(scores[name].device)
        n_alive = int(torch.count_nonzero(alive))
        if not 0 <= counts[name] <= n_alive:
            raise ValueError(f"layer {name!r} cannot keep {counts[name]} of {n_alive} weights")
        kept = _survivors([scores[name].reshape(-1)], [alive], n_alive, n_alive - counts[name])
        out[name] = kept[0].to(m.device).reshape(m.shape)
    return out


def layer_schedule(
    final: Mapping[str, int], sizes: Mapping[str, int], rounds: int
) -> list[dict[str, int]]:
    """Per-layer kept counts after each of ``rounds`` rounds, ending exactly at ``final``.

    Layer l goes geometrically from n_l to c_l: after round r it keeps about
    n_l·(c_l/n_l)^(r/R), rounded to the nearest integer (never below c_l); the last round is c_l.
    """
    out = []
    for r in range(1, rounds + 1):
        step = {}
        for name, c in final.items():
            n = sizes[name]
            step[name] = c if r == rounds or n == 0 else max(c, round(n * (c / n) ** (r / rounds)))
        out.append(step)
    return out
