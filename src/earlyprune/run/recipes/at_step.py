"""Pruning at step t > 0: score the dense run's weights at step t and train on from them."""

from __future__ import annotations

from torch import nn

from earlyprune.run.recipes.base import Recipe
from earlyprune.run.spec import RunSpec
from earlyprune.run.stages import Setup, dense_weights, fresh_model
from earlyprune.run.store import RunStore


class AtStep(Recipe):
    """Starts from the dense run's checkpoint at step t (computed once, shared by every method)."""

    name = "at_step"

    def prerequisites(self, spec: RunSpec) -> list[RunSpec]:
        return [spec.dense_spec()]

    def weights_to_prune(self, setup: Setup, store: RunStore) -> nn.Module:
        return at_step(setup, store)


def at_step(setup: Setup, store: RunStore) -> nn.Module:
    """The network with the dense run's weights at the run's prune step."""
    model = fresh_model(setup)
    model.load_state_dict(dense_weights(setup, store, setup.prune_step))
    return model
