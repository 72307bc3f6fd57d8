"""RigL (Evci et al., ICML 2020): drop the smallest |θ|, regrow the largest dense |∂L/∂θ|."""

from __future__ import annotations

import torch

from earlyprune.masks.mask import Mask
from earlyprune.methods.sparse_training.base import UpdateContext, register_sparse_trainer
from earlyprune.methods.sparse_training.dropgrow import drop_and_grow, drop_count


@register_sparse_trainer(
    "rigl",
    replaces_step=True,
    summary="RigL: every ΔT steps drop the smallest |w| per layer, regrow the largest |grad|",
)
def rigl_update(ctx: UpdateContext) -> Mask:
    """Per layer: drop ⌊f_t · n_active⌋ smallest |θ|, grow as many with the largest |g|.

    ``g`` is the gradient of the loss on the current batch with respect to every weight, the
    pruned ones included (the loop hands it over before masking it).
    """
    fraction = ctx.schedule.drop_fraction_at(ctx.step)
    out: Mask = {}
    for name, m in ctx.mask.items():
        g = ctx.grads[name]
        if g is None:  # a layer outside the graph of this batch: nothing to grow by
            out[name] = m.clone()
            continue
        k = drop_count(int(torch.count_nonzero(m)), fraction)
        out[name] = drop_and_grow(m, ctx.weights[name], g.abs(), k)
    return out
