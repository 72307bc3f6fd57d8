"""GraSP (Wang et al., 2020): gradient-signal preservation through the Hessian-gradient product.

GraSP scores S = −w ⊙ Hg and removes the *highest* S. With higher = keep that is the score
w ⊙ Hg. ``grasp_magnitude`` (the paper's variant) removes the lowest |w ⊙ Hg|; inverted GraSP
is ``invert=True`` on ``grasp``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from earlyprune.masks.mask import Mask, Scores
from earlyprune.methods.base import (
    Batch,
    check_batch,
    loss_of,
    masked_leaves,
    preserved_state,
    register_method,
)

#: The reference implementation divides the logits by T = 200 before the loss.
TEMPERATURE = 200.0


def hessian_gradient(
    model: nn.Module, batch: Batch, mask: Mask, temperature: float = TEMPERATURE
) -> tuple[Scores, Scores]:
    """Returns (masked weights, Hg) for the loss on ``batch``, in train mode.

    Hg is computed by double backpropagation: g = ∇L (kept in the graph), then ∇(g · stop(g)).
    One forward pass, one backward pass with graph, one double-backward.
    """
    with preserved_state(model):
        model.train()
        weights = masked_leaves(model, mask)
        loss = loss_of(model, weights, batch, temperature)
        leaves = list(weights.values())
        grads = torch.autograd.grad(loss, leaves, create_graph=True)
        z: Tensor = sum((g * g.detach()).sum() for g in grads)  # type: ignore[assignment]
        hg = torch.autograd.grad(z, leaves)
    return (
        {n: w.detach() for n, w in weights.items()},
        {n: h.detach() for n, h in zip(weights, hg, strict=True)},
    )


@register_method("grasp", summary="w * Hg (GraSP removes the highest -w*Hg); one batch")
def grasp_scores(model: nn.Module, batch: Batch | None, mask: Mask, seed: int) -> Scores:
    """w ⊙ Hg: keeping the highest is removing the highest of GraSP's −w ⊙ Hg."""
    weights, hg = hessian_gradient(model, check_batch(batch, "grasp"), mask)
    return {n: hg[n].mul_(weights[n]) for n in weights}  # in place: no extra copy


@register_method("grasp_magnitude", summary="|w * Hg|; removes the lowest (paper's variant)")
def grasp_magnitude_scores(model: nn.Module, batch: Batch | None, mask: Mask, seed: int) -> Scores:
    """|w ⊙ Hg|."""
    weights, hg = hessian_gradient(model, check_batch(batch, "grasp_magnitude"), mask)
    return {n: hg[n].mul_(weights[n]).abs_() for n in weights}
