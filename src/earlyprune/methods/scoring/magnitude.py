"""Magnitude pruning: score |w|."""

from __future__ import annotations

from torch import nn

from earlyprune.masks.mask import Mask, Scores, prunable
from earlyprune.methods.base import Batch, register_method


@register_method("magnitude", needs_batch=False, summary="|w|; removes the smallest weights")
def magnitude_scores(model: nn.Module, batch: Batch | None, mask: Mask, seed: int) -> Scores:
    """Absolute value of each weight."""
    return {n: p.detach().abs() for n, p in prunable(model).items()}
