"""Random pruning: i.i.d. Uniform(0, 1) scores (the baseline every method must beat)."""

from __future__ import annotations

import torch
from torch import nn

from earlyprune.core import rng
from earlyprune.masks.mask import Mask, Scores
from earlyprune.methods.base import Batch, register_method


@register_method(
    "random", needs_batch=False, summary="Uniform(0,1) score per weight; removes the lowest"
)
def random_scores(model: nn.Module, batch: Batch | None, mask: Mask, seed: int) -> Scores:
    """Seeded uniform scores; global removal then prunes each layer to about the same sparsity."""
    # Its own stream: drawn from the init stream's seed, the scores would track |w| (rng.py).
    gen = rng.generator(seed, "random_scores")
    # Drawn on the CPU so the scores (and the mask) do not depend on the device.
    return {n: torch.rand(m.shape, generator=gen).to(m.device) for n, m in mask.items()}
