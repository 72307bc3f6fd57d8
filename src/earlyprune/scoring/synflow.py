"""SynFlow (Tanaka et al., 2020): data-free iterative synaptic-flow conservation.

Score |∂R/∂w ⊙ w| with R the sum of the outputs of the network in which every parameter and
buffer is replaced by its absolute value, fed an all-ones input, in eval mode and float64 (float32
overflows on deep networks and already changes masks on ResNet-20). Iterative: 100 rounds.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call

from earlyprune.masking import Mask, Scores, prunable
from earlyprune.scoring.base import METHODS, Batch, Method


def linearized_copy(model: nn.Module) -> nn.Module:
    """A float64, eval-mode copy of ``model`` with |·| of every floating parameter and buffer."""
    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for tensor in list(net.parameters()) + list(net.buffers()):
            if tensor.is_floating_point():
                tensor.abs_()
    for p in net.parameters():
        p.requires_grad_(False)
        p.grad = None
    return net


def prepare_synflow(model: nn.Module, batch: Batch | None, seed: int) -> Callable[[Mask], Scores]:
    """Builds the float64 copy once; each round only reruns one forward/backward pass."""
    if batch is None or not isinstance(batch[0], torch.Tensor):
        raise ValueError("method 'synflow' needs the input shape: pass batch=(inputs, labels)")
    net = linearized_copy(model)
    abs_weights = {n: p.detach() for n, p in prunable(net).items()}
    device = next(iter(abs_weights.values())).device
    ones = torch.ones((1, *batch[0].shape[1:]), dtype=torch.float64, device=device)

    def score(mask: Mask) -> Scores:
        # Big networks make every full pass over the weights count (VGG-16: 14.7 M float64 per
        # round, 100 rounds), so the bool mask multiplies directly (same bits as w * 1.0 / 0.0)
        # and the scores are written into the fresh gradient buffers.
        with torch.no_grad():
            weights = {n: w.mul(mask[n]) for n, w in abs_weights.items()}
        leaves = [w.requires_grad_(True) for w in weights.values()]
        flow = functional_call(net, weights, (ones,)).sum()
        grads = torch.autograd.grad(flow, leaves)
        with torch.no_grad():
            return {
                n: g.mul_(w) if g.is_contiguous() else g * w
                for (n, w), g in zip(weights.items(), grads, strict=True)
            }

    return score


METHODS.add(
    "synflow",
    Method(
        "synflow",
        prepare_synflow,
        rounds=100,
        needs_batch=False,
        summary="|dR/dw * w|, R = sum of |network|(ones), float64; 100 rounds; data-free",
    ),
)
