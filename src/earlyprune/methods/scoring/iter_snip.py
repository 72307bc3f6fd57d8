"""Iterative SNIP (de Jorge et al., ICLR 2021, "Progressive Skeletonization"; github naver/force).

SNIP rescored on the masked network in each of T rounds, densities d^(t/T) (the library's
standard iterative schedule); pruned weights stay pruned. T = 60: the reference README's CIFAR
command (``--num_steps 60``). With T = 1 it is SNIP.
"""

from __future__ import annotations

from torch import nn

from earlyprune.masks.mask import Mask, Scores
from earlyprune.methods.base import Batch, check_batch, register_method
from earlyprune.methods.scoring.snip import snip_scores

#: Rounds in the reference's CIFAR-10 example (its argparse default is 10).
ROUNDS = 60


@register_method(
    "iter_snip",
    rounds=ROUNDS,
    summary="SNIP |dL/dw * w| rescored on the masked network; 60 rounds, pruned stay pruned",
)
def iter_snip_scores(model: nn.Module, batch: Batch | None, mask: Mask, seed: int) -> Scores:
    """|∂L/∂(θ⊙m) ⊙ (θ⊙m)| on the masked network, train mode (SNIP's score with the mask)."""
    return snip_scores(model, check_batch(batch, "iter_snip"), mask, seed)
