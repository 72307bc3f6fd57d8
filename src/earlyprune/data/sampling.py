"""Seeded randomness and class-stratified sampling, shared by batching, subsets and scoring.

Every random choice in ``earlyprune.data`` draws from a CPU generator seeded by hashing the
numbers it depends on (seed, epoch, step, purpose; :mod:`earlyprune.core.rng`), never from global
state: the same choice is made again on any machine and any device, an interrupted run can
recompute any batch, and no data stream shares draws with the model's initialization.
"""

from __future__ import annotations

import torch
from torch import Tensor

from earlyprune.core.errors import DatasetError
from earlyprune.core.rng import derive_seed

__registers__ = ()  # helper: class-balanced index sampling

__all__ = ["derive_seed", "per_class_pick", "seeded_generator", "stratified_indices"]


def seeded_generator(*parts: int | str) -> torch.Generator:
    """A CPU generator seeded from ``parts`` (see :func:`earlyprune.core.rng.derive_seed`); CPU so that
    draws do not depend on the device. ``(seed, ..., purpose)`` is the stream
    ``earlyprune.core.rng.generator(seed, purpose, ...)``."""
    return torch.Generator().manual_seed(derive_seed(*parts))


def stratified_indices(labels: Tensor, n: int, num_classes: int, seed: int) -> Tensor:
    """Picks ``n`` indices at random so that each class keeps its share (largest remainder).

    Args:
        labels: int64 labels of the split.
        n: How many indices to pick, 0 ≤ n ≤ len(labels).
        num_classes: Number of classes.
        seed: Seed of the random choice within each class.

    Returns:
        The chosen indices, sorted ascending (so the subset keeps the file order).
    """
    total = len(labels)
    if not 0 <= n <= total:
        raise DatasetError(f"cannot take {n} examples from a split of {total}")
    counts = torch.bincount(labels, minlength=num_classes).double()
    exact = counts * n / max(total, 1)
    quota = exact.floor().long()
    missing = n - int(quota.sum())
    if missing:
        # Ties in the fractional part go to the lower class index (stable sort), for determinism.
        order = torch.sort(exact - quota, descending=True, stable=True).indices
        quota[order[:missing]] += 1
    return per_class_pick(labels, quota, seed).sort().values


def per_class_pick(labels: Tensor, quota: Tensor, seed: int) -> Tensor:
    """Picks ``quota[c]`` random indices of each class c, grouped by class (vectorized).

    Rank each example within its class in a random order, then keep ranks below the quota.
    """
    perm = torch.randperm(len(labels), generator=seeded_generator(seed, "pick"))
    by_class = torch.sort(labels[perm], stable=True)
    ordered = perm[by_class.indices]
    starts = torch.searchsorted(by_class.values, by_class.values, side="left")
    rank = torch.arange(len(labels)) - starts
    return ordered[rank < quota[by_class.values]]
