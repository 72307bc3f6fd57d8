"""Drop-and-grow within one layer (SET, RigL): per-layer counts never change.

Conventions (google-research/rigl ``_get_update_op``): k = ⌊f · n_active⌋ active weights with
the smallest |θ| are dropped; then k weights are grown among every position not kept after the
drop — a weight just dropped may come straight back (it then keeps its value). Ties are broken
by position: among equal |θ| the earlier weight is dropped first; among equal growth scores
the earlier weight is grown first. (The reference adds N(0, 1e-5) noise to |θ| instead; exact
ties among trained float weights are rare either way.)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def drop_count(n_active: int, fraction: float) -> int:
    """k = ⌊fraction · n_active⌋ (the reference truncates)."""
    return math.floor(fraction * n_active)


def drop_and_grow(mask: Tensor, weight: Tensor, grow_score: Tensor, k: int) -> Tensor:
    """The layer's new mask: drop the ``k`` smallest-|weight| active entries, grow ``k`` others.

    Args:
        mask: Bool, the layer's current mask.
        weight: The layer's weights (same shape).
        grow_score: Higher = grown first (|gradient| for RigL, uniform noise for SET).
        k: How many to drop and grow (0 leaves the mask as it is).

    Returns:
        A new bool mask with exactly as many True entries as ``mask``.
    """
    if k <= 0:
        return mask.clone()
    flat = mask.reshape(-1)
    active = torch.nonzero(flat).flatten()
    # Ascending |w| over the active weights; stable, so equal magnitudes keep position order.
    order = torch.sort(weight.detach().reshape(-1)[active].abs(), stable=True).indices
    kept = torch.zeros_like(flat)
    kept[active[order[k:]]] = True
    candidates = torch.nonzero(~kept).flatten()
    score = grow_score.detach().reshape(-1)[candidates].float()
    grown = candidates[torch.sort(score, descending=True, stable=True).indices[:k]]
    kept[grown] = True
    return kept.reshape(mask.shape)
