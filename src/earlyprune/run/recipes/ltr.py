"""Lottery ticket rewinding (one shot): magnitude after training, survivors rewound to step t."""

from __future__ import annotations

from torch import nn

from earlyprune.run.recipes.after_training import AfterTraining
from earlyprune.run.recipes.base import reinit_ablation, rewound
from earlyprune.run.stages import Setup
from earlyprune.run.store import RunStore


class LotteryTicket(AfterTraining):
    """The after-training mask, trained from the initialization (t = 0) or the dense step t."""

    name = "ltr"

    def weights_to_train(self, setup: Setup, store: RunStore, model: nn.Module) -> nn.Module:
        return reinit_ablation(setup, rewound(setup, store, model))
