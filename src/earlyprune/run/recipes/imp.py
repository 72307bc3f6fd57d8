"""Iterative magnitude pruning (``earlyprune.run.imp``): level k builds on level k − 1."""

from __future__ import annotations

from torch import nn

from earlyprune.masks.mask import Mask
from earlyprune.run import imp
from earlyprune.run.recipes.base import Recipe, reinit_ablation, rewound
from earlyprune.run.spec import RunSpec
from earlyprune.run.stages import Setup, fresh_model
from earlyprune.run.store import RunStore


class IterativeMagnitude(Recipe):
    """Scores level k − 1's trained weights within its mask; survivors rewound to step t."""

    name = "imp"

    def prerequisites(self, spec: RunSpec) -> list[RunSpec]:
        # The dense run too: every level rewinds to its weights at step t.
        previous = imp.previous_spec(spec)
        dense = spec.dense_spec()
        return [dense] if previous == dense else [dense, previous]

    def weights_to_prune(self, setup: Setup, store: RunStore) -> nn.Module:
        model = fresh_model(setup)
        model.load_state_dict(imp.previous_level(setup, store)[0])  # checked on every rank
        return model

    def choose_mask(self, setup: Setup, store: RunStore, model: nn.Module) -> Mask:
        return imp.level_mask(setup, model, imp.previous_level(setup, store)[1])

    def weights_to_train(self, setup: Setup, store: RunStore, model: nn.Module) -> nn.Module:
        return reinit_ablation(setup, rewound(setup, store, model))
