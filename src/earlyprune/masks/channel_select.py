"""Selecting whole output channels by aggregated score, tied channels together.

The tracing (which channels are tied, who reads them) is in :mod:`earlyprune.masks.channels`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from earlyprune.masks.channels import ChannelGraph, trace_channels
from earlyprune.masks.mask import Mask, prunable


def channel_scores(
    graph: ChannelGraph,
    scores: Mapping[str, Tensor],
    aggregate: str = "l1",
    mask: Mask | None = None,
) -> dict[int, Tensor]:
    """Score of every channel of every group: the aggregate of its weights' scores, summed over
    the group's tied layers. ``l1`` (default) sums |score| (for non-negative scorers, the plain
    sum); ``sum`` keeps the sign (for signed scorers such as GraSP). A channel whose weights
    ``mask`` has all pruned scores −∞ (never revived)."""
    if aggregate not in ("l1", "sum"):
        raise ValueError(f"unknown channel aggregate {aggregate!r}; choose one of: l1, sum")
    out: dict[int, Tensor] = {}
    for g, names in enumerate(graph.groups):
        total, alive = None, None
        for n in names:
            s = scores[n].detach().float().reshape(scores[n].shape[0], -1)
            if mask is not None:
                s = s * mask[n].reshape(s.shape).to(s.device)
                a = mask[n].reshape(s.shape[0], -1).any(1)
                alive = a if alive is None else alive | a
            s = s.abs() if aggregate == "l1" else s
            total = s.sum(1) if total is None else total + s.sum(1)
        if alive is not None:
            total = total.masked_fill(~alive.to(total.device), -math.inf)
        out[g] = total
    return out


def channels_to_mask(
    graph: ChannelGraph, keep: Mapping[int, Tensor], shapes: Mapping[str, tuple[int, ...]]
) -> Mask:
    """The weight mask of channel choices: a row is kept iff its channel is, and a column iff
    the input channel it reads is (so the mask counts exactly the shrunk network's weights)."""
    out: Mask = {}
    for name, shape in shapes.items():
        rows = keep[graph.group_of[name]].reshape(shape[0], *([1] * (len(shape) - 1)))
        m = rows.expand(shape).clone()
        if name in graph.inputs:
            group, per = graph.inputs[name]
            cols = keep[group].repeat_interleave(per)
            m &= cols.reshape(1, shape[1], *([1] * (len(shape) - 2))).to(m.device)
        out[name] = m
    return out


def _ranked(agg: Tensor) -> Tensor:
    """Channel indices best first; among equal scores the later channel ranks higher, so the
    earlier one is pruned first (the package's tie rule)."""
    return torch.sort(agg, stable=True).indices.flip(0)


def _addition_order(sizes: Mapping[int, int], density: Mapping[int, float]) -> list[int]:
    """The group of each channel beyond its group's first, in the order channels are added.

    A group of C channels with allocated density d adds its (j+1)-th best channel at key
    (j + ½) / (C·√d): the λ at which ``keep round(λ·C·√d)`` reaches it, so every prefix of
    the order is that one rule at some λ. Equal keys add the later group first (the earlier
    one is pruned first); a group allocated nothing adds its channels last.
    """
    entries = []
    for g, c in sizes.items():
        scale = c * math.sqrt(density[g])
        entries += [((j + 0.5) / scale if scale > 0 else math.inf, -g, j) for j in range(1, c)]
    entries.sort()
    return [-neg_g for _, neg_g, _ in entries]


def _kept_weights(
    graph: ChannelGraph,
    keep: Mapping[int, Tensor],
    shapes: Mapping[str, tuple[int, ...]],
    mask: Mask | None,
) -> int:
    """Weights the channel choice ``keep`` leaves: rows × columns × kernel per layer, counted
    exactly (with ``mask``, its already-pruned weights are not counted)."""
    if mask is not None:
        chosen = channels_to_mask(graph, keep, shapes)
        return sum(int((chosen[n] & mask[n].cpu()).sum()) for n in shapes)
    total = 0
    for name, shape in shapes.items():
        rows = int(keep[graph.group_of[name]].sum())
        cols = shape[1] if len(shape) > 1 else 1
        if name in graph.inputs:
            group, per = graph.inputs[name]
            cols = int(keep[group].sum()) * per
        total += rows * cols * math.prod(shape[2:])
    return total


def channel_step(model: nn.Module) -> int:
    """The most weights one prunable channel carries: its rows in its tied layers plus its
    columns in the layers that read it. :func:`select_channels` keeps within half of it of
    its budget (unless one channel per group is already over the budget)."""
    graph = trace_channels(model)
    params = prunable(model)
    step = 0
    for g, names in enumerate(graph.groups):
        if g in graph.fixed:
            continue
        readers = [n for n, (src, _) in graph.inputs.items() if src == g]
        weights = sum(params[n].numel() for n in (*names, *readers))
        step = max(step, math.ceil(weights / params[names[0]].shape[0]))
    return step


def select_channels(
    model: nn.Module,
    scores: Mapping[str, Tensor],
    counts: Mapping[str, int],
    aggregate: str = "l1",
    mask: Mask | None = None,
) -> Mask:
    """Keeps whole output channels by aggregated score, as many weights as ``counts`` in all.

    Each group of tied layers keeps its best channels (among equal scores the earlier channel
    goes first); how many follows its allocated density d = Σcounts / Σsizes of its members:
    k = round(λ·C·√d) of its C channels, at least 1 (a layer loses rows to its own channels
    and columns to its input's, so √d of each leaves about d), with one λ for the network.
    Channels are added one at a time in the order λ reaches them (:func:`_addition_order`),
    and the prefix whose exact weight count (rows and the columns that follow the kept input
    channels) is closest to Σcounts wins, the sparser on a tie: the kept count is within
    half of :func:`channel_step` of the budget whatever the scorer's allocation. Fixed groups
    (the output layer, anything summed with the input) keep all their channels.
    """
    graph = trace_channels(model)
    params = prunable(model)
    shapes = {n: tuple(p.shape) for n, p in params.items()}
    agg = channel_scores(graph, scores, aggregate, mask)
    ranked, density = {}, {}
    for g, names in enumerate(graph.groups):
        if g not in graph.fixed:
            ranked[g] = _ranked(agg[g].cpu())
            density[g] = sum(counts[n] for n in names) / sum(params[n].numel() for n in names)
    order = _addition_order({g: len(r) for g, r in ranked.items()}, density)

    def keep_at(length: int) -> dict[int, Tensor]:
        k = dict.fromkeys(ranked, 1)
        for g in order[:length]:
            k[g] += 1
        keep = {
            g: torch.ones(shapes[names[0]][0], dtype=torch.bool)
            for g, names in enumerate(graph.groups)
        }
        for g, r in ranked.items():
            keep[g][r[k[g] :]] = False
        return keep

    def kept(length: int) -> int:
        return _kept_weights(graph, keep_at(length), shapes, mask)

    budget = sum(int(c) for c in counts.values())
    lo, hi = 0, len(order)
    while lo < hi:  # the shortest prefix that keeps at least the budget (kept grows with it)
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if kept(mid) >= budget else (mid + 1, hi)
    if lo > 0 and budget - kept(lo - 1) <= kept(lo) - budget:
        lo -= 1
    out = channels_to_mask(graph, keep_at(lo), shapes)
    return out if mask is None else {n: m & mask[n].cpu() for n, m in out.items()}
