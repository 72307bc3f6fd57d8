"""ProsPr (Alizadeh et al., ICLR 2022, "Prospect Pruning"; github mil-ad/prospr).

Score |∂L_M/∂c| at c = 1, where L_M is the loss after M plain SGD steps started from c⊙θ, the
gradient taken through the whole unrolled graph (second order: every inner gradient is itself
differentiated). Conventions of the reference's ``cli.py`` defaults: M = 3, inner learning rate
0.1, no momentum, no weight decay, every parameter (biases and BatchNorm too) updated in the
inner steps, the same batch in every inner step and for the final loss, network in train mode.
One-shot global selection. ``first_order=True`` is the reference's first-order variant (the inner
gradients are treated as constants). With M = 0 it is SNIP.

Memory: the unrolled graph holds M + 1 forward passes and, per step, a fresh copy of every
parameter and of its gradient: about 2M + 2 copies of the weights plus M + 1 sets of activations
(and the double backward's temporaries) — measured in ``benchmarks/bench_memory.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from earlyprune.masks.mask import Mask, Scores, prunable
from earlyprune.methods.base import (
    Batch,
    Method,
    check_batch,
    loss_of,
    preserved_state,
    register_method,
)

STEPS = 3
INNER_LR = 0.1


def prospr_scores(
    model: nn.Module,
    batch: Batch | None,
    mask: Mask,
    *,
    steps: int = STEPS,
    lr: float = INNER_LR,
    first_order: bool = False,
) -> Scores:
    """|∂L(θ_M)/∂c| at c = 1, θ_0 = c⊙m⊙θ, θ_{i+1} = θ_i − lr ∇L(θ_i) (all parameters).

    Args:
        model: Any ``nn.Module`` (not modified).
        batch: ``(inputs, labels)`` used for every inner step and the final loss.
        mask: Current mask (pruned weights start at zero).
        steps: Inner SGD steps M ≥ 0 (0 gives SNIP's scores).
        lr: Inner learning rate.
        first_order: Treat the inner gradients as constants (the reference's "first_order").
    """
    batch = check_batch(batch, "prospr")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"prospr steps must be an integer ≥ 0, got {steps!r}")
    names = list(prunable(model))
    with preserved_state(model):
        model.train()
        params = {n: p.detach() for n, p in model.named_parameters()}
        cs = {n: torch.ones_like(params[n], requires_grad=True) for n in names}
        fast: dict[str, Tensor] = {}
        for n, p in params.items():  # pruned weights start at zero and may grow back inside
            fast[n] = p * mask[n] * cs[n] if n in cs else p.clone().requires_grad_(True)
        for _ in range(steps):
            # Train-mode passes update BatchNorm statistics; preserved_state restores them.
            loss = loss_of(model, fast, batch)
            grads = torch.autograd.grad(
                loss, list(fast.values()), create_graph=not first_order, allow_unused=True
            )
            fast = {
                n: w if g is None else w - lr * g
                for (n, w), g in zip(fast.items(), grads, strict=True)
            }
        meta = torch.autograd.grad(
            loss_of(model, fast, batch), [cs[n] for n in names], allow_unused=True
        )
    return {
        n: torch.zeros_like(cs[n]) if g is None else g.detach().abs_()
        for n, g in zip(names, meta, strict=True)
    }


def prospr_method(
    steps: int = STEPS, lr: float = INNER_LR, first_order: bool = False, name: str = "prospr"
) -> Method:
    """A ProsPr ``Method`` with other inner steps, inner learning rate or the first-order variant.

    Pass it anywhere a method name is accepted: ``ep.prune(model, prospr_method(steps=1), ...)``.
    """

    def prepare(model: nn.Module, batch: Batch | None, seed: int) -> Callable[[Mask], Scores]:
        return lambda mask: prospr_scores(
            model, batch, mask, steps=steps, lr=lr, first_order=first_order
        )

    return Method(name, prepare, summary=_summary(steps, lr, first_order))


def _summary(steps: int, lr: float, first_order: bool) -> str:
    variant = "first-order" if first_order else "through the unrolled graph"
    return f"|dL/dc| after {steps} SGD steps (lr {lr}) from c*theta, {variant}; one batch"


@register_method("prospr", summary=_summary(STEPS, INNER_LR, False), prepared=True)
def prepare_prospr(model: nn.Module, batch: Batch | None, seed: int) -> Callable[[Mask], Scores]:
    """The published setting (steps, lr above, through the unrolled graph) of :func:`prospr_method`."""
    return prospr_method().prepare(model, batch, seed)
