"""``random`` placement: each layer keeps a uniformly random subset of its allocated size.

Top-k of i.i.d. Uniform(0, 1) scores is a uniform k-subset. The scores come from their own
stream, derived from (seed, "placement"), so they are independent of the run's other random
draws (initialization, the ``random`` method's scores, the shuffle ablation).
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn

from earlyprune.masking import Mask, Scores
from earlyprune.placement.base import register_placement
from earlyprune.scoring.base import Batch


def placement_generator(seed: int) -> torch.Generator:
    """The placement stream of a run seeded ``seed`` (SHA-256 of "seed:placement")."""
    digest = hashlib.sha256(f"{seed}:placement".encode()).hexdigest()
    return torch.Generator().manual_seed(int(digest[:16], 16))


@register_placement("random", summary="a uniformly random subset of each layer's count")
def random_placement(model: nn.Module, batch: Batch | None, mask: Mask, seed: int) -> Scores:
    gen = placement_generator(seed)
    # Drawn on the CPU so the mask does not depend on the device.
    return {n: torch.rand(m.shape, generator=gen).to(m.device) for n, m in mask.items()}
