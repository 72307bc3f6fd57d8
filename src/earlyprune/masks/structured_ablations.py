"""The paper's mask ablations, acting within a structure so the ablated mask keeps it.

- ``shuffle`` forgets where a method placed its weights but keeps what the structure fixes:
  * ``nm:N:M``: each eligible layer's groups are permuted (a group's pattern moves whole to
    another group position of the same layer); skipped layers are unchanged;
  * ``fanin``: each unit keeps its count of inputs at uniformly random positions of its row;
  * ``channel``: each group of tied layers keeps as many channels as before, drawn uniformly
    at random (fixed groups keep all), and the columns follow the kept input channels;
  * ``unstructured``: the layer-wise permutation of ``methods.ablations.shuffle``.
- ``invert`` keeps the worst instead of the best within the structure: the structured
  selection of the negated scores (same counts, same tie rule).

The random draws come from the ``"shuffle"`` stream of ``seed``, like the unstructured shuffle.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from earlyprune.core import rng
from earlyprune.masks.channel_select import channels_to_mask, select_channels
from earlyprune.masks.channels import kept_channels, trace_channels
from earlyprune.masks.mask import Mask
from earlyprune.masks.structure import (
    Structure,
    nm_eligible,
    parse_structure,
    select_structured,
)


def _permute_rows(rows: Tensor, gen: torch.Generator) -> Tensor:
    perm = torch.randperm(rows.shape[0], generator=gen).to(rows.device)
    return rows[perm]


def _within_rows(rows: Tensor, gen: torch.Generator) -> Tensor:
    """Each row's True entries moved to uniformly random positions of that row."""
    keys = torch.rand(rows.shape, generator=gen).to(rows.device)
    order = torch.argsort(keys, dim=1)
    counts = rows.sum(1, keepdim=True)
    ranks = torch.arange(rows.shape[1], device=rows.device).expand_as(rows)
    out = torch.zeros_like(rows)
    out.scatter_(1, order, ranks < counts)
    return out


def _shuffle_nm(mask: Mapping[str, Tensor], st: Structure, gen: torch.Generator) -> Mask:
    out: Mask = {}
    for name, m in mask.items():
        shape = tuple(m.shape)
        if not nm_eligible(shape, st.m):
            out[name] = m.clone()
            continue
        moved = m.movedim(1, -1)
        groups = _permute_rows(moved.reshape(-1, st.m), gen)
        out[name] = groups.reshape(moved.shape).movedim(-1, 1).contiguous()
    return out


def _shuffle_channels(model: nn.Module, mask: Mapping[str, Tensor], gen: torch.Generator) -> Mask:
    graph = trace_channels(model)
    keep = kept_channels(graph, mask)
    new = {}
    for g, k in keep.items():
        new[g] = k if g in graph.fixed else _within_rows(k.reshape(1, -1), gen).reshape(-1)
    shapes = {n: tuple(m.shape) for n, m in mask.items()}
    return channels_to_mask(graph, new, shapes)


def shuffle_structured(
    mask: Mapping[str, Tensor],
    structure: Structure | str,
    seed: int,
    model: nn.Module | None = None,
) -> Mask:
    """A random mask with ``mask``'s structure and counts (see the module docstring).

    Args:
        mask: A mask that has ``structure``.
        structure: Its structure string.
        seed: Seed of the ``"shuffle"`` stream.
        model: The network; required by ``channel`` (the residual ties).
    """
    st = parse_structure(structure)
    gen = rng.generator(seed, "shuffle")
    if st.kind == "nm":
        return _shuffle_nm(mask, st, gen)
    if st.kind == "fanin":
        return {
            n: _within_rows(m.reshape(m.shape[0], -1), gen).reshape(m.shape)
            for n, m in mask.items()
        }
    if st.kind == "channel":
        if model is None:
            raise ValueError("shuffle under structure channel needs the model")
        return _shuffle_channels(model, mask, gen)
    out: Mask = {}
    for name, m in mask.items():  # as methods.ablations.shuffle: a layer-wise permutation
        flat = m.reshape(-1)
        out[name] = flat[torch.randperm(flat.numel(), generator=gen).to(flat.device)].reshape(
            m.shape
        )
    return out


def invert_structured(
    scores: Mapping[str, Tensor],
    structure: Structure | str,
    counts: Mapping[str, int] | None = None,
    mask: Mask | None = None,
    model: nn.Module | None = None,
) -> Mask:
    """The worst weights the structure allows: :func:`select_structured` of ``−scores``.

    Under ``channel`` the channel aggregate itself is negated (``−Σ|s|``): negating the scores
    before an L1 sum would change nothing.
    """
    if parse_structure(structure).kind == "channel":
        if model is None or counts is None:
            raise ValueError("invert under structure channel needs the model and counts")
        worst = {n: -s.detach().float().abs() for n, s in scores.items()}
        return select_channels(model, worst, counts, aggregate="sum", mask=mask)
    negated = {n: -s.detach().float() for n, s in scores.items()}
    return select_structured(negated, structure, counts, mask, model)
