"""FORCE (de Jorge et al., ICLR 2021, "Progressive Skeletonization"; github naver/force).

Each round takes the loss gradient at the *pruned* network θ⊙m and scores every weight, pruned or
not, by |θ ⊙ ∂L/∂(θ⊙m)| with the original θ; the round then selects among all weights
(``revive=True``), so a pruned weight can come back. Densities d^(t/T), T = 60 (the reference
README's CIFAR command), network in train mode (the reference prunes a freshly built network).
"""

from __future__ import annotations

import torch
from torch import nn

from earlyprune.masks.mask import Mask, Scores, prunable
from earlyprune.methods.base import (
    Batch,
    check_batch,
    loss_of,
    masked_leaves,
    preserved_state,
    register_method,
)

#: Rounds in the reference's CIFAR-10 example command.
ROUNDS = 60


@register_method(
    "force",
    rounds=ROUNDS,
    revive=True,
    summary="|theta * dL/d(theta*m)| for all weights at the pruned net; 60 rounds, can revive",
)
def force_scores(model: nn.Module, batch: Batch | None, mask: Mask, seed: int) -> Scores:
    """|θ ⊙ g| with g = ∂L/∂w at w = θ⊙m, for every weight (pruned ones included)."""
    batch = check_batch(batch, "force")
    with preserved_state(model):
        model.train()
        weights = masked_leaves(model, mask)
        loss = loss_of(model, weights, batch)
        grads = torch.autograd.grad(loss, list(weights.values()))
    params = prunable(model)
    return {n: g.mul_(params[n].detach()).abs_() for n, g in zip(weights, grads, strict=True)}
