"""Gradual magnitude pruning (Zhu & Gupta 2017): dense start, cubic sparsity schedule."""

from __future__ import annotations

from earlyprune.masks.mask import Mask, select
from earlyprune.methods.sparse_training.base import UpdateContext, register_sparse_trainer


@register_sparse_trainer(
    "gmp",
    dense_start=True,
    family="gradual pruning",
    summary="GMP: from dense, prune |w| every Δt steps to s_f + (s_i − s_f)(1 − (t − t0)/(nΔt))³",
)
def gmp_update(ctx: UpdateContext) -> Mask:
    """Keeps exactly ``N − round(s_t · N)`` weights, the largest |θ| among the survivors.

    Removal is global (one threshold) or per layer (every layer at s_t, Zhu & Gupta's form)
    following the run's ``scope``; pruned weights are never revived.
    """
    sched = ctx.schedule
    total = sum(m.numel() for m in ctx.mask.values())
    n_keep = total - round(sched.sparsity_at(ctx.step) * total)
    alive = sum(int(m.count_nonzero()) for m in ctx.mask.values())
    if n_keep >= alive:  # the schedule has not reached the current density yet
        return ctx.mask
    scores = {n: w.abs() for n, w in ctx.weights.items()}
    density = n_keep / total
    return select(scores, n_keep, ctx.mask, scope=sched.scope, density=density)
