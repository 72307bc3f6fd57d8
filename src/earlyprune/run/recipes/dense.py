"""The dense run: trained once, unpruned; its checkpoints are the weights other runs reuse."""

from __future__ import annotations

from torch import nn

from earlyprune.masks.mask import Mask
from earlyprune.run.recipes.base import Recipe
from earlyprune.run.stages import Setup
from earlyprune.run.store import RunStore


class Dense(Recipe):
    """No mask; keeps the rewind step's checkpoint (for pruning at step t, LTR and IMP)."""

    name = "dense"
    prunes = False

    def choose_mask(self, setup: Setup, store: RunStore, model: nn.Module) -> Mask:
        raise TypeError("the dense run has no mask")

    def weights_to_train(self, setup: Setup, store: RunStore, model: nn.Module) -> nn.Module:
        return model

    def kept_steps(self, setup: Setup) -> list[int]:
        return [setup.preset.rewind_step]
