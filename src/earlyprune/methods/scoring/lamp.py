"""LAMP (Lee et al., ICLR 2021): layer-adaptive magnitude scores, then one global threshold.

Within a layer, sort the weights by magnitude (ascending); weight u scores
w_u² / Σ_{v ≥ u} w_v², the sum over itself and every weight after it in that order. The largest
weight of every layer scores 1, so no layer is emptied before the others have thinned.
Equal magnitudes are ordered by index (a stable sort): the earlier one ranks lower.
"""

from __future__ import annotations

import torch
from torch import nn

from earlyprune.masks.mask import Mask, Scores, prunable
from earlyprune.methods.base import Batch, register_method


@register_method("lamp", needs_batch=False, summary="w²/Σ_{v≥u} w_v² within a layer; global")
def lamp_scores(model: nn.Module, batch: Batch | None, mask: Mask, seed: int) -> Scores:
    """LAMP scores in float64 (the suffix sums of squares need the precision)."""
    out: Scores = {}
    for name, p in prunable(model).items():
        # Ranked by |w| in the weights' own dtype (the same order as w², and a cheaper sort),
        # then squared in float64.
        magnitude, order = torch.sort((p.detach() * mask[name]).reshape(-1).abs(), stable=True)
        ranked = magnitude.double().square()
        # Σ over this weight and all larger ones; on the CPU, since a floating-point cumsum has
        # no deterministic CUDA kernel (it raises under an fp32 run's settings).
        tail = ranked.flip(0).cpu().cumsum(0).flip(0).to(ranked.device)
        score = torch.where(tail > 0, ranked / tail.clamp_min(1e-300), torch.zeros_like(ranked))
        flat = torch.empty_like(score)
        flat[order] = score
        out[name] = flat.reshape(p.shape)
    return out
