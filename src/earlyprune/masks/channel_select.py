"""Selecting whole output channels by aggregated score, tied channels together.

The tracing (which channels are tied, who reads them) is in :mod:`earlyprune.masks.channels`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from earlyprune.masks.channels import ChannelGraph, drop_lowest, trace_channels
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


def select_channels(
    model: nn.Module,
    scores: Mapping[str, Tensor],
    counts: Mapping[str, int],
    aggregate: str = "l1",
    mask: Mask | None = None,
) -> Mask:
    """Keeps whole output channels by aggregated score; tied channels go together.

    A group of tied layers keeps k = round(C · √d) of its C channels, d = Σcounts / Σsizes its
    members' allocated density, at least 1: a layer loses rows to its own channels and columns
    to its input's, so keeping √d of each leaves about d of its weights (the exact achieved
    sparsity is what the mask counts); fixed groups (the output layer, anything summed
    with the input) keep all. Among equal channel scores the earlier channel goes first.
    """
    graph = trace_channels(model)
    params = prunable(model)
    agg = channel_scores(graph, scores, aggregate, mask)
    keep: dict[int, Tensor] = {}
    for g, names in enumerate(graph.groups):
        c = params[names[0]].shape[0]
        if g in graph.fixed:
            keep[g] = torch.ones(c, dtype=torch.bool)
            continue
        density = sum(counts[n] for n in names) / sum(params[n].numel() for n in names)
        k = min(c, max(1, round(c * math.sqrt(density))))
        keep[g] = drop_lowest(agg[g].cpu(), c - k)
    out = channels_to_mask(graph, keep, {n: tuple(p.shape) for n, p in params.items()})
    return out if mask is None else {n: m & mask[n].cpu() for n, m in out.items()}
