"""SynFlow (Tanaka et al., 2020): data-free iterative synaptic-flow conservation.

Score |∂R/∂w ⊙ w| with R the sum of the outputs of the network in which every parameter is
replaced by its absolute value, fed an all-ones input, in eval mode and float64 (float32
overflows on deep networks and already changes masks on ResNet-20). Iterative: 100 rounds.

Buffers (BatchNorm's running mean and variance) keep their sign, as in the authors' code
(github 123Bailey123/Pruning), which takes |·| of the parameters only; Synaptic-Flow also takes
|·| of the buffers. At initialization the two agree (running mean 0, variance 1); after training
(``--prune-step > 0``) the running means are signed and the masks differ.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call

from earlyprune.masks.mask import Mask, Scores, prunable
from earlyprune.methods.base import Batch, register_method


def linearized_copy(model: nn.Module) -> nn.Module:
    """A float64, eval-mode copy of ``model`` with |·| of every floating parameter (buffers such
    as BatchNorm running statistics are kept as they are, following the authors)."""
    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for tensor in net.parameters():
            if tensor.is_floating_point():
                tensor.abs_()
    for p in net.parameters():
        p.requires_grad_(False)
        p.grad = None
    return net


class _Scorer:
    """SynFlow rounds on one float64 copy whose weights are masked in place.

    When a round's mask only removes weights (as in :func:`earlyprune.prune`), just the newly
    removed ones are zeroed, so no round re-reads or re-allocates every weight to mask it; a mask
    that revives weights rebuilds the copy from the model. Either way the weights used equal
    |w| · mask exactly (the copy keeps |w| where the mask keeps w).
    """

    def __init__(self, model: nn.Module, input_shape: tuple[int, ...]) -> None:
        self.model = model
        self._rebuild()
        device = next(iter(self.weights.values())).device
        self.ones = torch.ones((1, *input_shape), dtype=torch.float64, device=device)

    def _rebuild(self) -> None:
        self.net = linearized_copy(self.model)
        self.weights: dict[str, Tensor] = {n: p.detach() for n, p in prunable(self.net).items()}
        self.kept: Mask | None = None  # None: nothing zeroed yet
        self.n_kept = sum(w.numel() for w in self.weights.values())
        # |w| · 0 is NaN for an infinite weight: only finite weights may be zeroed by indexing.
        self.finite = all(bool(torch.isfinite(w).all()) for w in self.weights.values())

    def __call__(self, mask: Mask) -> Scores:
        n_mask = sum(int(torch.count_nonzero(m)) for m in mask.values())
        if self.kept is None:
            drop = {n: ~m for n, m in mask.items()}
        else:  # what the last mask kept and this one does not
            drop = {n: k > mask[n] for n, k in self.kept.items()}
        counts = {n: int(torch.count_nonzero(d)) for n, d in drop.items()}
        if self.kept is not None and n_mask != self.n_kept - sum(counts.values()):
            self._rebuild()  # the mask revives weights: start again from |w|
            drop = {n: ~m for n, m in mask.items()}
            counts = {n: int(torch.count_nonzero(d)) for n, d in drop.items()}
        with torch.no_grad():  # weights := |w| · mask, touching only what changed
            for n, w in self.weights.items():
                if not self.finite:
                    w.mul_(mask[n])  # the bool mask promotes: same bits as w * 1.0 / 0.0
                elif 16 * counts[n] < w.numel():  # few: by index (an iterative round)
                    w[drop[n]] = 0.0
                elif counts[n]:  # many: one dense pass, no index list as long as the weights
                    w.masked_fill_(drop[n], 0.0)
        del drop
        self.kept, self.n_kept = {n: m.clone() for n, m in mask.items()}, n_mask
        self._after_masking(mask)
        leaves = {n: w.detach().requires_grad_(True) for n, w in self.weights.items()}
        flow = functional_call(self.net, leaves, (self.ones,)).sum()
        grads = torch.autograd.grad(flow, list(leaves.values()))
        with torch.no_grad():
            return {
                n: self._score(g, w) for (n, w), g in zip(self.weights.items(), grads, strict=True)
            }

    def _after_masking(self, mask: Mask) -> None:
        """Called once the copy's weights are masked, before the forward pass (SynFlow: nothing)."""

    @staticmethod
    def _score(grad: Tensor, weight: Tensor) -> Tensor:
        """|∂R/∂w ⊙ w| (both non-negative); into the fresh gradient buffer: no extra full copy."""
        return grad.mul_(weight) if grad.is_contiguous() else grad * weight


@register_method(
    "synflow",
    rounds=100,
    needs_batch=False,
    summary="|dR/dw * w|, R = sum of |network|(ones), float64; 100 rounds; data-free",
    prepared=True,
)
def prepare_synflow(model: nn.Module, batch: Batch | None, seed: int) -> Callable[[Mask], Scores]:
    """Builds the float64 copy once; each round only reruns one forward/backward pass."""
    if batch is None or not isinstance(batch[0], torch.Tensor):
        raise ValueError("method 'synflow' needs the input shape: pass batch=(inputs, labels)")
    return _Scorer(model, tuple(batch[0].shape[1:]))
