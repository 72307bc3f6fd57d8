"""Structured sparsity: which patterns a mask may take, and exact selection within them.

A structure string is one of:

- ``unstructured``: any weights (the default; the selection of :mod:`earlyprune.masks.mask`).
- ``nm:N:M``: in every group of M consecutive weights along the input channels, at each output
  unit and kernel position, keep the N best. This is NVIDIA ASP's layout (``sparse_masklib``
  permutes a conv weight (K, C, R, S) to (K, R, S, C) and groups along C; a Linear (K, C) groups
  along C) and PyTorch's semi-structured one (2:4 along the rows of a 2-D weight).
  Eligible layers follow ASP's auto-skip rule: a layer is pruned only if its output dimension
  divides by 8 and its input channels by 16 (the tensor-core tile; ASP prints "Auto skipping"
  and leaves the layer dense otherwise), and, for M other than 4, its input channels by M too.
  Skipped layers (a 3-channel stem, a 10-way classifier) stay dense, so a network's achieved
  sparsity is below 1 − N/M: :func:`achieved_sparsity` reports it exactly.
- ``fanin``: every output unit of a layer keeps the same number k of inputs, k = ⌊c / units⌋
  from the layer's allocated count c (condensed-sparsity / SRigL floor the per-neuron count the
  same way), but at least 1 so that no unit is cut off (SRigL raises instead).
- ``channel``: whole output channels (see :mod:`earlyprune.masks.channels`).

Ties are broken as everywhere in the package: among equal scores the earlier weight (lower
index in the group, unit or layer) is removed first, so selection is deterministic.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from earlyprune.masks.channel_select import select_channels
from earlyprune.masks.channels import drop_lowest
from earlyprune.masks.mask import Mask, select_counts

KINDS = ("unstructured", "nm", "fanin", "channel")
#: ASP's alignment for sparse tensor cores: output dim multiple of 8, input channels of 16.
ASP_OUT_ALIGN = 8
ASP_IN_ALIGN = 16
_NM = re.compile(r"nm:(\d+):(\d+)")


@dataclass(frozen=True)
class Structure:
    """A parsed structure string: ``kind`` and, for ``nm``, the N kept of every M."""

    kind: str
    n: int = 0
    m: int = 0

    def __str__(self) -> str:
        return f"nm:{self.n}:{self.m}" if self.kind == "nm" else self.kind


def parse_structure(text: object) -> Structure:
    """Parses ``unstructured``, ``nm:N:M`` (1 ≤ N < M ≤ 64), ``fanin`` or ``channel``.

    Raises:
        ValueError: one line naming the valid forms.
    """
    valid = "unstructured, nm:N:M (e.g. nm:2:4), fanin, channel"
    if isinstance(text, Structure):
        return text
    if not isinstance(text, str):
        raise ValueError(f"structure must be a string ({valid}), got {text!r}")
    s = text.strip().lower()
    if s in ("unstructured", "fanin", "channel"):
        return Structure(s)
    match = _NM.fullmatch(s)
    if match:
        n, m = int(match.group(1)), int(match.group(2))
        if 1 <= n < m <= 64:
            return Structure("nm", n, m)
        raise ValueError(f"structure {text!r}: nm:N:M needs 1 <= N < M <= 64")
    raise ValueError(f"unknown structure {text!r}; choose one of: {valid}")


def nm_eligible(shape: tuple[int, ...], m: int) -> bool:
    """Whether a weight of ``shape`` (out, in, *kernel) is pruned N:M (ASP's auto-skip rule)."""
    if len(shape) < 2:
        return False
    out, cin = shape[0], shape[1]
    return out % ASP_OUT_ALIGN == 0 and cin % ASP_IN_ALIGN == 0 and cin % m == 0


def _to_groups(t: Tensor, m: int) -> Tensor:
    """(out, in, *k) → (out·∏k·in/m, m): groups of m consecutive input channels."""
    moved = t.movedim(1, -1)  # (out, *k, in): the input channels last, as ASP permutes
    return moved.reshape(-1, m)


def _from_groups(g: Tensor, shape: tuple[int, ...]) -> Tensor:
    moved_shape = (shape[0], *shape[2:], shape[1])
    return g.reshape(moved_shape).movedim(-1, 1).contiguous()


def _alive_scores(score: Tensor, alive: Tensor | None) -> Tensor:
    """Scores as float with already-pruned weights at −∞, so they are removed first."""
    s = score.detach().float()
    if alive is None:
        return s
    return s.masked_fill(~alive.to(s.device), -math.inf)


def select_nm(scores: Mapping[str, Tensor], n: int, m: int, mask: Mask | None = None) -> Mask:
    """Keeps the ``n`` best of every ``m`` consecutive input-channel weights, per eligible layer.

    Args:
        scores: Higher = keep, per prunable weight name.
        n: Weights kept per group.
        m: Group size.
        mask: Current mask; its pruned weights are never revived (they go first).

    Returns:
        A new mask: eligible layers exactly n:m, ineligible ones as ``mask`` (or dense).
    """
    out: Mask = {}
    for name, score in scores.items():
        alive = None if mask is None else mask[name]
        shape = tuple(score.shape)
        if not nm_eligible(shape, m):
            out[name] = torch.ones(shape, dtype=torch.bool) if alive is None else alive.clone()
            continue
        groups = _to_groups(_alive_scores(score, alive), m)
        kept = _from_groups(drop_lowest(groups, m - n), shape)
        out[name] = kept if alive is None else kept & alive.to(kept.device)
    return out


def fanin_per_unit(count: int, shape: tuple[int, ...]) -> int:
    """Inputs each of the layer's units keeps: ⌊count / units⌋, at least 1, at most fan-in."""
    units, fan_in = shape[0], math.prod(shape[1:])
    return min(fan_in, max(1, count // units))


def select_fanin(
    scores: Mapping[str, Tensor], counts: Mapping[str, int], mask: Mask | None = None
) -> Mask:
    """Every output unit keeps its k best inputs, k = :func:`fanin_per_unit` of the layer's count.

    Args:
        scores: Higher = keep.
        counts: Weights allocated to each layer (an allocation's output); the layer keeps
            k·units of them, k floored, so it may keep a little fewer than allocated.
        mask: Current mask; pruned weights are never revived.

    Raises:
        ValueError: if a unit has fewer than k surviving inputs in ``mask``.
    """
    out: Mask = {}
    for name, score in scores.items():
        shape = tuple(score.shape)
        k = fanin_per_unit(int(counts[name]), shape)
        alive = None if mask is None else mask[name]
        if alive is not None and int(alive.reshape(shape[0], -1).sum(1).min()) < k:
            raise ValueError(f"layer {name!r}: a unit has fewer than {k} surviving inputs")
        rows = _alive_scores(score, alive).reshape(shape[0], -1)
        out[name] = drop_lowest(rows, rows.shape[1] - k).reshape(shape)
    return out


def achieved_sparsity(mask: Mapping[str, Tensor]) -> float:
    """The exact fraction of prunable weights removed by ``mask``."""
    total = sum(m.numel() for m in mask.values())
    kept = sum(int(torch.count_nonzero(m)) for m in mask.values())
    return (total - kept) / max(total, 1)


def check_structure(mask: Mapping[str, Tensor], structure: Structure | str) -> list[str]:
    """Names of the layers of ``mask`` that break ``structure`` (empty when all conform).

    ``nm``: every group of an eligible layer keeps at most N (exactly N for a fresh mask);
    ``fanin``: every unit of a layer keeps the same number of inputs; ``channel``: every
    output row is all kept or all pruned up to its input columns (checked in ``channels``).
    """
    st = parse_structure(structure)
    bad = []
    for name, m in mask.items():
        shape = tuple(m.shape)
        if st.kind == "nm" and nm_eligible(shape, st.m):
            if int(_to_groups(m, st.m).sum(1).max()) > st.n:
                bad.append(name)
        elif st.kind == "fanin":
            per_unit = m.reshape(shape[0], -1).sum(1)
            if bool((per_unit != per_unit[0]).any()):
                bad.append(name)
    return bad


def select_structured(
    scores: Mapping[str, Tensor],
    structure: Structure | str,
    counts: Mapping[str, int] | None = None,
    mask: Mask | None = None,
    model: torch.nn.Module | None = None,
) -> Mask:
    """The mask ``structure`` allows that keeps the best weights by ``scores``.

    Args:
        scores: Higher = keep, per prunable weight name.
        structure: A structure string or :class:`Structure`.
        counts: Per-layer kept counts from an allocation: required for ``unstructured``,
            ``fanin`` and ``channel``; ignored by ``nm`` (N:M fixes each layer's count).
        mask: Current mask (iterative pruning); pruned weights are never revived.
        model: The network, required by ``channel`` (to find residual ties).

    Returns:
        A new mask; :func:`achieved_sparsity` gives its exact sparsity.
    """
    st = parse_structure(structure)
    if st.kind == "nm":
        return select_nm(scores, st.n, st.m, mask)
    if counts is None:
        raise ValueError(f"structure {st} needs per-layer counts from an allocation")
    if st.kind == "fanin":
        return select_fanin(scores, counts, mask)
    if st.kind == "channel":
        if model is None:
            raise ValueError("structure channel needs the model (to trace residual ties)")
        return select_channels(model, scores, counts, mask=mask)
    current = mask or {n: torch.ones_like(s, dtype=torch.bool) for n, s in scores.items()}
    return select_counts(scores, counts, current)
