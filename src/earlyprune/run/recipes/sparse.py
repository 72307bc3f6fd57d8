"""Sparse training (SET, RigL, GMP, a static mask): a starting mask that training moves."""

from __future__ import annotations

from torch import nn

from earlyprune.masks.mask import Mask
from earlyprune.methods import sparse_training
from earlyprune.run.recipes.at_step import at_step
from earlyprune.run.recipes.base import Recipe
from earlyprune.run.spec import RunSpec
from earlyprune.run.stages import Setup, fresh_model
from earlyprune.run.store import RunStore


class SparseTraining(Recipe):
    """The algorithm's starting mask, at init or (``prune_step`` > 0) on the dense step t."""

    name = "sparse_training"
    moves_mask = True

    def prerequisites(self, spec: RunSpec) -> list[RunSpec]:
        return [spec.dense_spec()] if (spec.prune_step or 0) > 0 else []

    def weights_to_prune(self, setup: Setup, store: RunStore) -> nn.Module:
        return at_step(setup, store) if setup.prune_step > 0 else fresh_model(setup)

    def choose_mask(self, setup: Setup, store: RunStore, model: nn.Module) -> Mask:
        return sparse_training.starting_mask(setup.spec, model)
