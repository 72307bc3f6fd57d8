"""``random`` placement: each layer keeps a uniformly random subset of its allocated size.

Top-k of i.i.d. Uniform(0, 1) scores is a uniform k-subset. The scores come from their own
stream, ``rng.generator(seed, "placement")``, independent of the run's other random draws
(initialization, the ``random`` method's scores, the shuffle ablation).
"""

from __future__ import annotations

import torch
from torch import nn

from earlyprune.core import rng
from earlyprune.masks.mask import Mask, Scores
from earlyprune.methods.base import Batch
from earlyprune.methods.placement.base import register_placement


@register_placement("random", summary="a uniformly random subset of each layer's count")
def random_placement(model: nn.Module, batch: Batch | None, mask: Mask, seed: int) -> Scores:
    gen = rng.generator(seed, "placement")
    # Drawn on the CPU so the mask does not depend on the device.
    return {n: torch.rand(m.shape, generator=gen).to(m.device) for n, m in mask.items()}
