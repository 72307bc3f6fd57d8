"""The sparse-training registry, the initial mask, and the hook that moves a mask mid-training.

A sparse-training method is one file registering an ``update`` function with
``@register_sparse_trainer``: given the current mask, weights and (dense) gradients at an update
step, it returns the new mask. The :class:`MaskUpdater` runs it inside the training loop (the
``on_grad`` hook of :func:`earlyprune.train.loop.train`), zeroes the weights that become active,
resets their optimizer state and keeps per-layer counts as the method promises.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from earlyprune.core import rng
from earlyprune.core.registry import Registry
from earlyprune.masks.mask import Mask, prunable
from earlyprune.methods.sparse_training.schedule import UpdateSchedule


@dataclass(frozen=True)
class UpdateContext:
    """What an update function sees at one update step.

    Attributes:
        step: Optimizer steps completed before this iteration.
        mask: The current mask (bool, on the weights' devices); do not modify it.
        weights: Prunable weights (pruned ones are exactly zero).
        grads: Their gradients on the current batch, *before* masking (dense; None if unused).
        schedule: The run's resolved update schedule.
        seed: The run's seed (random choices derive their streams from it and the step).
    """

    step: int
    mask: Mask
    weights: dict[str, Tensor]
    grads: dict[str, Tensor | None]
    schedule: UpdateSchedule
    seed: int


UpdateFn = Callable[[UpdateContext], Mask]


@dataclass(frozen=True)
class SparseTrainer:
    """A registered sparse-training method.

    Attributes:
        name: Method name (a ``RunSpec.method``).
        update: New mask at an update step (None: the mask never moves).
        dense_start: Training starts from the full mask (GMP) instead of a sparse one.
        replaces_step: The update takes the place of that iteration's optimizer step (RigL,
            as in the reference code), so regrown weights enter the next forward pass at 0.
        summary: One line for `earlyprune list` and the README.
        family: How reports group it ("sparse training" or "gradual pruning").
    """

    name: str
    update: UpdateFn | None
    dense_start: bool = False
    replaces_step: bool = False
    summary: str = ""
    family: str = "sparse training"


SPARSE_TRAINERS: Registry[SparseTrainer] = Registry("sparse-training method")


def register_sparse_trainer(
    name: str,
    *,
    dense_start: bool = False,
    replaces_step: bool = False,
    summary: str = "",
    family: str = "sparse training",
) -> Callable[[UpdateFn], UpdateFn]:
    """Registers ``fn(ctx) -> Mask`` as the mask update of method ``name``."""

    def decorate(fn: UpdateFn) -> UpdateFn:
        SPARSE_TRAINERS.add(
            name, SparseTrainer(name, fn, dense_start, replaces_step, summary, family)
        )
        return fn

    return decorate


def stream(seed: int, purpose: str, *parts: int | str) -> torch.Generator:
    """A CPU generator for one purpose of a run seeded ``seed`` (``earlyprune.core.rng``'s streams).

    The one place this package derives random streams: ``"sparse_init"`` (placement of the
    starting mask) and ``("set_grow", step)`` (SET's regrowth at one update step).
    """
    return rng.generator(seed, purpose, *parts)


# ---- the initial mask ---------------------------------------------------------------------
#: RigL's default allocation of the starting mask (Evci et al. 2020).
DEFAULT_ALLOCATION = "erk"


def layer_counts(
    model: nn.Module, sparsity: float, allocation: str = DEFAULT_ALLOCATION
) -> dict[str, int]:
    """Per-layer kept counts of the starting mask, summing exactly to ``N − round(sparsity · N)``.

    Args:
        model: The network.
        sparsity: Fraction of prunable weights removed.
        allocation: A registered data-free allocation (``earlyprune.methods.allocation``; default ERK).
    """
    from earlyprune.methods.allocation import allocate

    params = prunable(model)
    total = sum(p.numel() for p in params.values())
    counts = allocate(
        allocation, [tuple(p.shape) for p in params.values()], total - round(sparsity * total)
    )
    return dict(zip(params, counts, strict=True))


def initial_mask(
    model: nn.Module, sparsity: float, seed: int, allocation: str = DEFAULT_ALLOCATION
) -> Mask:
    """The sparse starting mask of SET, RigL and static: an allocation, random placement.

    Args:
        model: The network (masks are built on its weights' devices).
        sparsity: Fraction of prunable weights removed.
        seed: Run seed; placement draws from its own stream.
        allocation: How many weights each layer keeps (default ERK).
    """
    gen = stream(seed, "sparse_init")
    counts = layer_counts(model, sparsity, allocation)
    out: Mask = {}
    for name, p in prunable(model).items():
        flat = torch.zeros(p.numel(), dtype=torch.bool)
        flat[torch.randperm(p.numel(), generator=gen)[: counts[name]]] = True
        out[name] = flat.reshape(p.shape).to(p.device)
    return out
