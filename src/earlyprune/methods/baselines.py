"""The random-sparse baselines as methods: each allocation's layer counts, random placement.

``erk``, ``er``, ``uniform``, ``uniform_plus`` and ``smart_ratio`` are methods too (the "random
sparse" baselines of Liu et al., ICLR 2022): the allocation of that name decides how many weights
each layer keeps, the ``random`` placement which ones. Registering an allocation does not make
such a method: a new allocation is a baseline only once it is listed here.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from earlyprune.masks.mask import Mask, Scores
from earlyprune.methods.allocation import ALLOCATIONS
from earlyprune.methods.base import Batch, register_method
from earlyprune.methods.placement import resolve_placement


def random_placement(model: nn.Module, batch: Batch | None, seed: int) -> Callable[[Mask], Scores]:
    """``Method.prepare`` of every baseline: the scores of the ``random`` placement."""
    return resolve_placement("random").prepare(model, batch, seed)


def _register_baseline(name: str) -> None:
    register_method(
        name,
        needs_batch=False,
        summary=f"{ALLOCATIONS.get(name).summary}; random placement (baseline)",
        allocation=name,
        placement="random",
        prepared=True,
    )(random_placement)


# The order is that of `earlyprune list` (alphabetical, as the allocations were imported).
for _name in ("er", "erk", "smart_ratio", "uniform", "uniform_plus"):
    _register_baseline(_name)
