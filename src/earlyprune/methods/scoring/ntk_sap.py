"""NTK-SAP (Wang et al., ICLR 2023; github YiteWang/NTK-SAP): data-free, iterative.

The proxy of the NTK trace is the finite difference P(c) = Σ_i ‖f(x_i; c⊙θ) − f(x_i; c⊙(θ + εδ))‖²
with Gaussian inputs x (the shape of the scoring batch) and Gaussian perturbations δ; the score is
|∂P/∂c| at the current mask, summed over R resamples, each with a *fresh* initialization θ of the
network and fresh x and δ. The resample's initializer is the reference's ``_initialize_weights``:
He fan-in normal weights, BatchNorm γ = 1 and β = 0, biases not redrawn (the model's own).
As in the reference: BatchNorm statistics are reset and set to the batch statistics of the
unperturbed masked network on x (one train-mode pass with momentum 1, no gradient), then both
networks are evaluated in eval mode with those statistics; pruned weights score zero.
Defaults for CIFAR-10 from the reference's ``scripts/run.sh``: ε = 0.01, T = 20 rounds, R = 5.
Of the model's own parameters only the Conv/Linear biases are read (as in the reference, whose
resamples never redraw them); the mask is still applied to the model's weights by the caller.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call

from earlyprune.core.rng import generator
from earlyprune.masks.mask import Mask, Scores, prunable
from earlyprune.methods.base import Batch, Method, register_method
from earlyprune.models.init import WEIGHT_LAYERS, initialize

EPSILON = 0.01
ROUNDS = 20
RESAMPLES = 5


def input_shape(batch: Batch | None, method: str) -> tuple[int, ...]:
    """The full (batch-size first) shape of the inputs; the values and labels are not used."""
    if batch is None or not isinstance(batch[0], Tensor):
        raise ValueError(f"method {method!r} needs the input shape: pass batch=(inputs, labels)")
    return tuple(batch[0].shape)


def resample(net: nn.Module, shape: tuple[int, ...], gen: torch.Generator) -> tuple[Tensor, Scores]:
    """Re-initializes ``net`` in place and draws x ~ N(0, I) of ``shape`` and δ ~ N(0, I).

    As the reference's ``_initialize_weights``: every Conv/Linear weight is redrawn (He fan-in
    normal), BatchNorm γ = 1 and β = 0, and the biases are left as they are (the model's own).

    Returns:
        (x, δ per prunable weight), on the network's device and dtype.
    """
    biases = {n: b.detach().clone() for n, b in _layer_biases(net).items()}
    initialize(net, generator=gen, bn_gamma="one")
    with torch.no_grad():
        for n, b in _layer_biases(net).items():
            b.copy_(biases[n])
    weights = prunable(net)
    p0 = next(iter(weights.values()))
    x = torch.randn(shape, generator=gen).to(p0.device, p0.dtype)
    deltas = {
        n: torch.randn(w.shape, generator=gen).to(w.device, w.dtype) for n, w in weights.items()
    }
    return x, deltas


def _layer_biases(net: nn.Module) -> dict[str, Tensor]:
    """The biases of the layers whose weights are initialized (Conv, Linear), by name."""
    return {
        f"{n}.bias": m.bias
        for n, m in net.named_modules()
        if isinstance(m, WEIGHT_LAYERS) and isinstance(m.bias, Tensor)
    }


def proxy_gradient(
    net: nn.Module, mask: Mask, x: Tensor, deltas: Scores, epsilon: float = EPSILON
) -> Scores:
    """∂P/∂c at c = mask for one resample (θ = ``net``'s current weights); ``net`` is changed
    only in its BatchNorm statistics and training mode.
    """
    theta = {n: w.detach() for n, w in prunable(net).items()}
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():  # the statistics of the unperturbed masked network on x
        for m in norms:
            m.reset_running_stats()
            m.momentum = 1.0
        net.train()
        functional_call(net, {n: w * mask[n] for n, w in theta.items()}, (x,))
    net.eval()
    cs = {n: mask[n].to(w.dtype).requires_grad_(True) for n, w in theta.items()}
    out = functional_call(net, {n: theta[n] * cs[n] for n in theta}, (x,))
    moved = {n: (theta[n] + epsilon * deltas[n]) * cs[n] for n in theta}
    out_mod = functional_call(net, moved, (x,))
    proxy = (out - out_mod).pow(2).sum()
    grads = torch.autograd.grad(proxy, list(cs.values()), allow_unused=True)
    return {
        n: torch.zeros_like(cs[n]) if g is None else g for n, g in zip(theta, grads, strict=True)
    }


def ntk_sap_method(
    epsilon: float = EPSILON,
    resamples: int = RESAMPLES,
    rounds: int = ROUNDS,
    name: str = "ntk_sap",
) -> Method:
    """An NTK-SAP ``Method`` with other ε, resamples R or default rounds T."""

    def prepare(model: nn.Module, batch: Batch | None, seed: int) -> Callable[[Mask], Scores]:
        shape = input_shape(batch, name)
        net = copy.deepcopy(model)  # re-initialized for every resample; the model is untouched
        for p in net.parameters():
            p.requires_grad_(False)
        calls = [0]

        def score(mask: Mask) -> Scores:
            t = calls[0]
            calls[0] += 1
            total = {
                n: torch.zeros_like(m, dtype=w.dtype)
                for (n, m), w in zip(mask.items(), prunable(net).values(), strict=True)
            }
            for r in range(resamples):
                x, deltas = resample(net, shape, generator(seed, "ntk_sap", t, r))
                for n, g in proxy_gradient(net, mask, x, deltas, epsilon).items():
                    total[n] += g
            return {n: g.abs_().mul_(mask[n]) for n, g in total.items()}

        return score

    summary = _summary(epsilon, resamples, rounds)
    return Method(name, prepare, rounds=rounds, needs_batch=False, summary=summary)


def _summary(epsilon: float, resamples: int, rounds: int) -> str:
    return (
        f"|dP/dc|, P = NTK-trace finite difference (eps {epsilon}), {resamples} fresh "
        f"inits x Gaussian inputs; {rounds} rounds; data-free"
    )


@register_method(
    "ntk_sap",
    rounds=ROUNDS,
    needs_batch=False,
    summary=_summary(EPSILON, RESAMPLES, ROUNDS),
    prepared=True,
)
def prepare_ntk_sap(model: nn.Module, batch: Batch | None, seed: int) -> Callable[[Mask], Scores]:
    """The published setting (ε, R, T above) of :func:`ntk_sap_method`."""
    return ntk_sap_method().prepare(model, batch, seed)
