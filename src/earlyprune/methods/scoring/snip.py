"""SNIP (Lee et al., 2019): connection sensitivity |∂L/∂w ⊙ w| on one batch."""

from __future__ import annotations

import torch
from torch import nn

from earlyprune.masks.mask import Mask, Scores
from earlyprune.methods.base import (
    Batch,
    check_batch,
    loss_of,
    masked_leaves,
    preserved_state,
    register_method,
)


@register_method("snip", summary="|dL/dw * w| on one batch; removes the lowest")
def snip_scores(model: nn.Module, batch: Batch | None, mask: Mask, seed: int) -> Scores:
    """|g ⊙ w| with g the loss gradient on ``batch``, network in train mode (batch statistics).

    Equal to |∂L/∂c| for a multiplicative mask c at c = 1, which is how SNIP defines it.
    """
    batch = check_batch(batch, "snip")
    with preserved_state(model):
        model.train()
        weights = masked_leaves(model, mask)
        loss = loss_of(model, weights, batch)
        grads = torch.autograd.grad(loss, list(weights.values()))
    # In place into the gradient buffers: no further copy of the weights.
    return {n: g.mul_(w.detach()).abs_() for (n, w), g in zip(weights.items(), grads, strict=True)}
