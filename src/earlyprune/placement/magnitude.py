"""``magnitude`` placement: each layer keeps its largest |w|."""

from __future__ import annotations

from torch import nn

from earlyprune.masking import Mask, Scores, prunable
from earlyprune.placement.base import register_placement
from earlyprune.scoring.base import Batch


@register_placement("magnitude", summary="each layer keeps its largest |w|")
def magnitude_placement(model: nn.Module, batch: Batch | None, mask: Mask, seed: int) -> Scores:
    return {n: p.detach().abs() for n, p in prunable(model).items()}
