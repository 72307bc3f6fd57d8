"""SynFlow-L2 (Patil & Dovrolis, ICML 2021 "PHEW", ``Prune/synflowl2_utils.py``): data-free.

SynFlow on the network whose parameters are all squared instead of taken in absolute value: with
v = θ² for every parameter (weights, biases, BatchNorm γ and β), R = the sum of the outputs on an
all-ones input in eval mode, the score of a weight is |θ| · ∂R/∂v, as the authors' code computes
it (``p.grad * sqrt(p.data)`` on the squared copy), i.e. half of ∂R/∂|θ|. It is *not*
v ⊙ ∂R/∂v (which would rank a weight by θ² times its paths' flow). Also as in that code:

* buffers (BatchNorm running statistics) are left as they are (the code squares
  ``parameters()`` only), like earlyprune's ``synflow``;
* in every round after the first, the bias of a layer's output unit whose incoming weights are
  all pruned is zeroed (the code's ``bias_masks``), so a dead unit sends no flow on.

Float64 here (the authors' code runs float32); 100 rounds, densities (1 − s)^(n/N) as SynFlow.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from earlyprune.masks.mask import Mask, Scores
from earlyprune.methods.base import Batch, register_method
from earlyprune.methods.scoring.synflow import _Scorer

ROUNDS = 100


class _SquaredScorer(_Scorer):
    """SynFlow's scorer on θ² (θ² = |θ|², so squaring SynFlow's |θ| copy in place is exact)."""

    def _rebuild(self) -> None:
        super()._rebuild()
        with torch.no_grad():
            for p in self.net.parameters():
                if p.is_floating_point():
                    p.mul_(p)
        # The biases of the layers whose weights are pruned, squared, by weight name.
        modules = dict(self.net.named_modules())
        self.biases: dict[str, tuple[Tensor, Tensor]] = {}
        for name in self.weights:
            owner = modules[name.rpartition(".")[0]]
            bias = getattr(owner, "bias", None)
            if isinstance(bias, Tensor) and bias.shape == (owner.weight.shape[0],):
                self.biases[name] = (bias.detach(), bias.detach().clone())
        # Squaring can overflow to inf: the masking must then multiply, not index.
        self.finite = all(bool(torch.isfinite(w).all()) for w in self.weights.values())

    def _after_masking(self, mask: Mask) -> None:
        """Zeroes the (squared) bias of every output unit left without a kept incoming weight."""
        with torch.no_grad():
            for name, (bias, full) in self.biases.items():
                alive = mask[name].reshape(mask[name].shape[0], -1).any(dim=1)
                torch.where(alive, full, torch.zeros_like(full), out=bias)

    @staticmethod
    def _score(grad: Tensor, weight: Tensor) -> Tensor:
        """|θ| · ∂R/∂v with v = θ² the copy's weight (√ of a float square is exactly |θ|)."""
        return grad.mul_(weight.sqrt())


@register_method(
    "synflow_l2",
    rounds=ROUNDS,
    needs_batch=False,
    summary="|theta| * dR/dv, v = theta^2 (PHEW's code), float64; 100 rounds; data-free",
    prepared=True,
)
def prepare_synflow_l2(
    model: nn.Module, batch: Batch | None, seed: int
) -> Callable[[Mask], Scores]:
    """Builds the squared float64 copy once; each round reruns one forward/backward pass."""
    if batch is None or not isinstance(batch[0], torch.Tensor):
        raise ValueError("method 'synflow_l2' needs the input shape: pass batch=(inputs, labels)")
    return _SquaredScorer(model, tuple(batch[0].shape[1:]))
