"""The hook that moves the mask inside the training loop, and its checkpoint entry."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from earlyprune.masks.mask import Mask, prunable
from earlyprune.methods.sparse_training.base import SparseTrainer, UpdateContext
from earlyprune.methods.sparse_training.schedule import UpdateSchedule


class MaskUpdater:
    """An ``on_grad`` hook of :func:`earlyprune.train.loop.train` for one sparse-training run.

    It owns ``mask`` (the run's mask dict, updated **in place**, so the caller's dict is the
    current mask at any time: the final mask when training ends). At an update step it calls the
    method's update with the dense gradients, writes the new mask into the loop's live masks,
    zeroes the weights that become active and resets their optimizer state (every per-weight
    state tensor: SGD momentum, Adam moments).

    Args:
        trainer: The registered method.
        mask: The run's mask (bool tensors on the weights' devices).
        schedule: Resolved update schedule.
        seed: Run seed.
    """

    def __init__(
        self, trainer: SparseTrainer, mask: Mask, schedule: UpdateSchedule, seed: int
    ) -> None:
        self.trainer, self.mask, self.schedule, self.seed = trainer, mask, schedule, seed
        self.updates = 0  # update steps done in this process (for tests and logs)

    def __call__(
        self,
        step: int,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        live: Mapping[str, Tensor],
    ) -> bool:
        """Runs at every iteration after backward; returns True to skip its optimizer step."""
        if self.trainer.update is None or not self.schedule.is_update(step):
            return False
        params = prunable(model)
        ctx = UpdateContext(
            step=step,
            mask=self.mask,
            weights={n: params[n].detach() for n in self.mask},
            grads={n: params[n].grad for n in self.mask},
            schedule=self.schedule,
            seed=self.seed,
        )
        new = self.trainer.update(ctx)
        with torch.no_grad():
            for name, old in self.mask.items():
                m = new[name].to(device=old.device, dtype=torch.bool)
                born = m & ~old
                if born.any():
                    params[name][born] = 0  # regrown weights start at zero
                    _reset_state(optimizer, params[name], born)
                old.copy_(m)
                live[name].copy_(m)
        self.updates += 1
        return self.trainer.replaces_step

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint entry: the current mask (the schedule is a function of the step)."""
        return {n: m.cpu() for n, m in self.mask.items()}

    def load_state_dict(self, saved: Mapping[str, Tensor]) -> None:
        """Restores the mask of a checkpoint into the run's mask dict (in place)."""
        for name, m in self.mask.items():
            m.copy_(saved[name].to(device=m.device, dtype=torch.bool))


def _reset_state(optimizer: torch.optim.Optimizer, p: nn.Parameter, born: Tensor) -> None:
    for value in optimizer.state.get(p, {}).values():
        if isinstance(value, Tensor) and value.shape == p.shape:
            value[born] = 0
