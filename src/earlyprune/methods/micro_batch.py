"""Gradient-based scores accumulated over micro-batches, so a large scoring batch fits in memory.

Every gradient scorer differentiates the *mean* cross-entropy over the scoring batch. A mean over
N examples is Σ_k (n_k / N) · mean_k over micro-batches of n_k examples, so each gradient, and
each Hessian-vector product, is the same weighted sum of per-micro-batch ones. What is summed is
the gradient (or Hg), never the final score: SNIP's |g ⊙ w| is not the sum of per-chunk |g_k ⊙ w|.

* SNIP, iterative SNIP, FORCE: one pass per micro-batch accumulates g; the score follows.
* GraSP (both forms): a first pass accumulates g; a second computes Σ_k (n_k/N) H_k g, a double
  backward per micro-batch against the full-batch g — exactly Hg of the whole batch.
* ProsPr: the inner SGD trajectory θ_0 … θ_M is computed with micro-batched gradients; the
  derivative through it is then taken backwards, a_M = ∇L(θ_M), a_i = a_{i+1} − lr·H(θ_i)a_{i+1}
  (Hessian-vector products, micro-batched), and the score is |a_0 ⊙ m ⊙ θ|. This is the same
  derivative as back-propagating through the unrolled graph, holding one micro-batch's double
  backward in memory instead of M + 1 full-batch graphs.

Without batch statistics (LeNet, VGG without BatchNorm) the scores equal the one-batch scores up
to floating-point summation order (tested). **With BatchNorm in train mode they differ**: each
micro-batch is normalized by its own mean and variance, as in any gradient accumulation; the
running statistics are restored afterwards as always. Methods that read no labels (SynFlow,
magnitude, random, NTK-SAP, PHEW, the layer-wise baselines) are scored as they are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from torch import Tensor, nn

from earlyprune.masks.mask import Mask, Scores, prunable
from earlyprune.methods.base import (
    METHODS,
    Batch,
    Method,
    check_batch,
    loss_of,
    masked_leaves,
    preserved_state,
)
from earlyprune.methods.scoring.grasp import TEMPERATURE
from earlyprune.methods.scoring.prospr import INNER_LR, STEPS

__all__ = ["MICRO_BATCHED", "micro_batched", "score_in_micro_batches"]

#: (model, batch, mask, micro_batch) -> scores; the model is in train mode, state preserved.
MicroScorer = Callable[[nn.Module, Batch, Mask, int], Scores]


def chunks(batch: Batch, micro_batch: int) -> list[tuple[Batch, float]]:
    """The micro-batches of ``batch`` with their weights n_k / N (which sum to 1)."""
    x, y = batch
    n = len(y)
    return [
        ((x[i : i + micro_batch], y[i : i + micro_batch]), min(micro_batch, n - i) / n)
        for i in range(0, n, micro_batch)
    ]


def grad_of_mean(
    model: nn.Module, leaves: dict[str, Tensor], parts: list[tuple[Batch, float]], temp: float = 1.0
) -> list[Tensor]:
    """∇ of the whole batch's mean loss at ``leaves``, one micro-batch graph at a time."""
    total = [torch.zeros_like(w) for w in leaves.values()]
    for part, weight in parts:
        loss = loss_of(model, leaves, part, temp) * weight
        grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
        for t, g in zip(total, grads, strict=True):
            if g is not None:
                t.add_(g)
    return total


def hvp_of_mean(
    model: nn.Module,
    point: dict[str, Tensor],
    vector: list[Tensor],
    parts: list[tuple[Batch, float]],
    temp: float = 1.0,
) -> list[Tensor]:
    """H v for the whole batch's mean loss at ``point`` (H the Hessian in those tensors)."""
    total = [torch.zeros_like(v) for v in vector]
    for part, weight in parts:
        leaves = {n: w.detach().requires_grad_(True) for n, w in point.items()}
        loss = loss_of(model, leaves, part, temp) * weight
        grads = torch.autograd.grad(
            loss, list(leaves.values()), create_graph=True, allow_unused=True
        )
        dots = [(g * v).sum() for g, v in zip(grads, vector, strict=True) if g is not None]
        if not dots or not any(d.requires_grad for d in dots):
            continue  # the loss is linear in every tensor here: H v = 0
        hv = torch.autograd.grad(sum(dots), list(leaves.values()), allow_unused=True)
        for t, h in zip(total, hv, strict=True):
            if h is not None:
                t.add_(h)
    return total


def _snip(model: nn.Module, batch: Batch, mask: Mask, micro_batch: int) -> Scores:
    weights = masked_leaves(model, mask)
    grads = grad_of_mean(model, weights, chunks(batch, micro_batch))
    return {n: g.mul_(w.detach()).abs_() for (n, w), g in zip(weights.items(), grads, strict=True)}


def _force(model: nn.Module, batch: Batch, mask: Mask, micro_batch: int) -> Scores:
    weights = masked_leaves(model, mask)
    grads = grad_of_mean(model, weights, chunks(batch, micro_batch))
    params = prunable(model)
    return {n: g.mul_(params[n].detach()).abs_() for n, g in zip(weights, grads, strict=True)}


def _w_hg(model: nn.Module, batch: Batch, mask: Mask, micro_batch: int) -> Scores:
    weights = masked_leaves(model, mask)
    parts = chunks(batch, micro_batch)
    g = grad_of_mean(model, weights, parts, TEMPERATURE)
    point = {n: w.detach() for n, w in weights.items()}
    hg = hvp_of_mean(model, point, g, parts, TEMPERATURE)
    return {n: h.mul_(point[n]) for n, h in zip(weights, hg, strict=True)}


def _grasp_magnitude(model: nn.Module, batch: Batch, mask: Mask, micro_batch: int) -> Scores:
    return {n: s.abs_() for n, s in _w_hg(model, batch, mask, micro_batch).items()}


def prospr_micro(
    model: nn.Module,
    batch: Batch,
    mask: Mask,
    micro_batch: int,
    *,
    steps: int = STEPS,
    lr: float = INNER_LR,
    first_order: bool = False,
) -> Scores:
    """ProsPr's |∂L(θ_M)/∂c| by a backward sweep over the inner steps (see the module notes)."""
    parts = chunks(batch, micro_batch)
    names = list(prunable(model))
    theta0 = {
        n: p.detach() * mask[n] if n in mask else p.detach() for n, p in model.named_parameters()
    }
    trajectory = [theta0]
    for _ in range(steps):
        point = trajectory[-1]
        leaves = {n: w.detach().requires_grad_(True) for n, w in point.items()}
        grads = grad_of_mean(model, leaves, parts)
        trajectory.append({n: w - lr * g for (n, w), g in zip(point.items(), grads, strict=True)})
    final = {n: w.detach().requires_grad_(True) for n, w in trajectory[-1].items()}
    adjoint = grad_of_mean(model, final, parts)
    if not first_order:  # first order: dθ_M/dθ_0 is the identity
        for point in reversed(trajectory[:-1]):
            hv = hvp_of_mean(model, point, adjoint, parts)
            adjoint = [a - lr * h for a, h in zip(adjoint, hv, strict=True)]
    a0 = dict(zip(theta0, adjoint, strict=True))
    return {n: (a0[n] * theta0[n]).abs_() for n in names}  # θ_0 = c ⊙ m ⊙ θ at c = 1


def _prospr(model: nn.Module, batch: Batch, mask: Mask, micro_batch: int) -> Scores:
    return prospr_micro(model, batch, mask, micro_batch)


#: Registered method name → its micro-batched scorer. Only the registered method object of that
#: name qualifies (a ``prospr_method(steps=1)`` variant is another object and is refused).
MICRO_BATCHED: dict[str, MicroScorer] = {
    "snip": _snip,
    "iter_snip": _snip,
    "force": _force,
    "grasp": _w_hg,
    "grasp_magnitude": _grasp_magnitude,
    "prospr": _prospr,
}


def _resolve(method: str | Method) -> Method:
    return METHODS.get(method) if isinstance(method, str) else method


def _micro_scorer(method: Method) -> MicroScorer | None:
    if method.name in MICRO_BATCHED and method.name in METHODS.names():
        if METHODS.get(method.name) is method:
            return MICRO_BATCHED[method.name]
    return None


def _check_size(micro_batch: int) -> None:
    if isinstance(micro_batch, bool) or not isinstance(micro_batch, int) or micro_batch < 1:
        raise ValueError(f"micro_batch must be a positive integer, got {micro_batch!r}")


def _refuse(method: Method) -> ValueError:
    return ValueError(
        f"method {method.name!r} cannot score in micro-batches; those that can: "
        f"{', '.join(sorted(MICRO_BATCHED))} (methods that read no labels need no micro-batches)"
    )


def score_in_micro_batches(
    model: nn.Module,
    method: str | Method,
    batch: Batch | None,
    mask: Mask,
    seed: int,
    micro_batch: int,
) -> Scores:
    """One round of ``method``'s scores with the batch split into ``micro_batch``-sized chunks.

    Args:
        model: The network (not modified; mode and buffers restored).
        method: A registered name or ``Method``.
        batch: ``(inputs, labels)``.
        mask: Current mask (every prunable weight).
        seed: The method's seed (unused by the micro-batched scorers, passed through otherwise).
        micro_batch: Examples per chunk; at least the batch size gives the one-batch scores
            exactly (the method's own code runs).

    Returns:
        Scores as the method returns them, equal to its one-batch scores where the network has
        no batch statistics (up to summation order).

    Raises:
        ValueError: A bad ``micro_batch``, or a data-driven method with no micro-batched form.
    """
    _check_size(micro_batch)
    m = _resolve(method)
    scorer = _micro_scorer(m)
    if m.needs_batch and scorer is None:
        raise _refuse(m)
    if scorer is None or (batch is not None and len(batch[1]) <= micro_batch):
        one = m.prepare(model, batch, seed)
        return one(mask, None) if m.budgeted else one(mask)  # type: ignore[call-arg]
    batch = check_batch(batch, m.name)
    with preserved_state(model), torch.enable_grad():
        model.train()
        return scorer(model, batch, mask, micro_batch)


def micro_batched(method: str | Method, micro_batch: int) -> Method:
    """``method`` scoring in micro-batches of ``micro_batch`` (for ``ep.prune``/``ep.score``).

    A method that reads no labels is returned as it is. Raises at once (not at the first round) when the method has no micro-batched form.
    """
    _check_size(micro_batch)
    m = _resolve(method)
    if not m.needs_batch:
        return m  # it reads no labels: nothing to split
    if _micro_scorer(m) is None:
        raise _refuse(m)

    def prepare(model: nn.Module, batch: Batch | None, seed: int) -> Callable[[Mask], Scores]:
        return lambda mask: score_in_micro_batches(model, m, batch, mask, seed, micro_batch)

    return dataclasses.replace(m, prepare=prepare)
