"""SET (Mocanu et al. 2018): drop the smallest |θ|, regrow as many inactive weights at random."""

from __future__ import annotations

import torch

from earlyprune.masks.mask import Mask
from earlyprune.methods.sparse_training.base import UpdateContext, register_sparse_trainer, stream
from earlyprune.methods.sparse_training.dropgrow import drop_and_grow, drop_count


@register_sparse_trainer(
    "set",
    summary="SET: every ΔT steps drop the smallest |w| per layer, regrow at random (zero-init)",
)
def set_update(ctx: UpdateContext) -> Mask:
    """Per layer: drop ⌊f_t · n_active⌋ smallest |θ|, grow as many uniformly at random."""
    fraction = ctx.schedule.drop_fraction_at(ctx.step)
    # One stream per update step: the draw depends only on (seed, step), so resuming from a
    # checkpoint redraws exactly what an uninterrupted run draws.
    gen = stream(ctx.seed, "set_grow", ctx.step)
    out: Mask = {}
    for name, m in ctx.mask.items():
        noise = torch.rand(m.numel(), generator=gen).reshape(m.shape).to(m.device)
        k = drop_count(int(torch.count_nonzero(m)), fraction)
        out[name] = drop_and_grow(m, ctx.weights[name], noise, k)
    return out
