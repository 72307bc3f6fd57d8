"""The training schedule and the optimizer factory: one registry of optimizers, one LR rule.

``Schedule`` is everything the training loop needs to know about hyperparameters, in steps.
``make_optimizer`` is the only place an optimizer is built; register another with
``OPTIMIZERS.add(name, factory)`` where ``factory(params, sched) -> torch.optim.Optimizer``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from earlyprune.core.registry import Registry


@dataclass(frozen=True)
class Schedule:
    """A training schedule in iterations (epochs converted with the dataset's batch count).

    The learning rate before optimizer step ``i`` (0-based) is
    ``lr · gamma^(number of milestones ≤ i)``, times ``(i + 1) / warmup_steps`` while
    ``i < warmup_steps`` (linear warmup: the first step uses ``lr / warmup_steps``, step
    ``warmup_steps − 1`` the full rate). With ``warmup_steps = 0`` no factor is applied at all,
    so schedules without warmup compute exactly the numbers they always did.
    """

    total_steps: int
    steps_per_epoch: int
    batch_size: int
    lr: float
    milestones: tuple[int, ...]  # steps after which the LR is multiplied by gamma
    gamma: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    optimizer: str = "sgd"
    nesterov: bool = False
    warmup_steps: int = 0
    label_smoothing: float = 0.0

    def lr_at(self, step: int) -> float:
        lr = self.lr * self.gamma ** sum(step >= m for m in self.milestones)
        if step < self.warmup_steps:
            lr = lr * (step + 1) / self.warmup_steps
        return lr


OptimizerFactory = Callable[[Iterable[nn.Parameter], Schedule], torch.optim.Optimizer]
OPTIMIZERS: Registry[OptimizerFactory] = Registry("optimizer")


@OPTIMIZERS.register("sgd")
def _sgd(params: Iterable[nn.Parameter], sched: Schedule) -> torch.optim.Optimizer:
    # The paper's optimizer (Appendix A): SGD, momentum 0.9, coupled (L2) weight decay.
    return torch.optim.SGD(
        params,
        lr=sched.lr,
        momentum=sched.momentum,
        weight_decay=sched.weight_decay,
        nesterov=sched.nesterov,
    )


@OPTIMIZERS.register("adam")
def _adam(params: Iterable[nn.Parameter], sched: Schedule) -> torch.optim.Optimizer:
    # torch's default betas (0.9, 0.999); weight decay added to the gradient (L2), as torch does.
    return torch.optim.Adam(params, lr=sched.lr, weight_decay=sched.weight_decay)


@OPTIMIZERS.register("adamw")
def _adamw(params: Iterable[nn.Parameter], sched: Schedule) -> torch.optim.Optimizer:
    # Decoupled weight decay (Loshchilov & Hutter): w ← w − lr·wd·w besides the Adam step.
    return torch.optim.AdamW(params, lr=sched.lr, weight_decay=sched.weight_decay)


def make_optimizer(model: nn.Module, sched: Schedule) -> torch.optim.Optimizer:
    """The optimizer ``sched.optimizer`` names, over all of ``model``'s parameters."""
    return OPTIMIZERS.get(sched.optimizer)(model.parameters(), sched)
