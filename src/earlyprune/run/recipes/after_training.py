"""Magnitude pruning after training: the classic baseline, pruning the fully trained network."""

from __future__ import annotations

from torch import nn

from earlyprune.masks.mask import Mask
from earlyprune.run.recipes.base import Recipe, scored_mask
from earlyprune.run.spec import RunSpec
from earlyprune.run.stages import Setup, dense_weights, fresh_model
from earlyprune.run.store import RunStore


class AfterTraining(Recipe):
    """Scores the dense run's final weights by magnitude and trains on from them."""

    name = "after_training"

    def prerequisites(self, spec: RunSpec) -> list[RunSpec]:
        return [spec.dense_spec()]

    def weights_to_prune(self, setup: Setup, store: RunStore) -> nn.Module:
        return trained(setup, store)

    def choose_mask(self, setup: Setup, store: RunStore, model: nn.Module) -> Mask:
        return scored_mask(setup, model, "magnitude")


def trained(setup: Setup, store: RunStore) -> nn.Module:
    """The network with the dense run's final weights."""
    model = fresh_model(setup)
    model.load_state_dict(dense_weights(setup, store, None))
    return model
