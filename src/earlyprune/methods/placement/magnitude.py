"""``magnitude`` placement: each layer keeps its largest |w|."""

from __future__ import annotations

from torch import nn

from earlyprune.masks.mask import Mask, Scores, prunable
from earlyprune.methods.base import Batch
from earlyprune.methods.placement.base import register_placement


@register_placement("magnitude", summary="each layer keeps its largest |w|")
def magnitude_placement(model: nn.Module, batch: Batch | None, mask: Mask, seed: int) -> Scores:
    return {n: p.detach().abs() for n, p in prunable(model).items()}
