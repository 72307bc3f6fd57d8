"""SynFlow-L2 (Patil & Dovrolis, ICML 2021 "PHEW", its ``synflowl2`` pruner): data-free.

SynFlow on the network whose parameters are squared instead of taken in absolute value: with
v = θ², R = the sum of the outputs on an all-ones input (float64, eval mode, |·| of the buffers
as in Synaptic-Flow's code, on which PHEW's builds), score v ⊙ ∂R/∂v — for a chain, the sum over the paths through a weight of the
product of the *squared* weights along them. 100 rounds, as SynFlow.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from earlyprune.masking import Mask, Scores
from earlyprune.scoring.base import METHODS, Batch, Method
from earlyprune.scoring.synflow import _Scorer

ROUNDS = 100


class _SquaredScorer(_Scorer):
    """SynFlow's scorer on θ² (θ² = |θ|², so squaring SynFlow's |θ| copy in place is exact)."""

    def _rebuild(self) -> None:
        super()._rebuild()
        with torch.no_grad():
            for p in self.net.parameters():
                if p.is_floating_point():
                    p.mul_(p)
            # |·| of the buffers too: PHEW's pruners build on Synaptic-Flow's, whose linearization
            # takes |·| of the whole state_dict (earlyprune's synflow keeps their sign).
            for b in self.net.buffers():
                if b.is_floating_point():
                    b.abs_()
        # Squaring can overflow to inf: the masking must then multiply, not index.
        self.finite = all(bool(torch.isfinite(w).all()) for w in self.weights.values())


def prepare_synflow_l2(
    model: nn.Module, batch: Batch | None, seed: int
) -> Callable[[Mask], Scores]:
    """Builds the squared float64 copy once; each round reruns one forward/backward pass."""
    if batch is None or not isinstance(batch[0], torch.Tensor):
        raise ValueError("method 'synflow_l2' needs the input shape: pass batch=(inputs, labels)")
    return _SquaredScorer(model, tuple(batch[0].shape[1:]))


METHODS.add(
    "synflow_l2",
    Method(
        "synflow_l2",
        prepare_synflow_l2,
        rounds=ROUNDS,
        needs_batch=False,
        summary="SynFlow on theta^2: v * dR/dv, v = theta^2, float64; 100 rounds; data-free",
    ),
)
