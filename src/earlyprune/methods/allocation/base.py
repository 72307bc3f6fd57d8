"""Allocations: how many weights each layer keeps (the first half of a mask).

An allocation rule maps the prunable layers' shapes (network order) and the total budget
``n_keep`` to real-valued per-layer quotas; :func:`integer_counts` turns them into integers
(largest remainder, exact total, at least one weight per layer whenever the budget allows).
Placement (which weights) is separate: see :mod:`earlyprune.methods.placement`. The registry
and ``@register_allocation`` live in :mod:`earlyprune.methods.base`; the baseline *methods* of
the same names (allocation + random placement) in :mod:`earlyprune.methods.baselines`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from earlyprune.methods.base import (  # noqa: F401  (re-exported: the registry lives low)
    ALLOCATIONS,
    Allocation,
    Rule,
    Shape,
    register_allocation,
)

__registers__ = ()  # helper: integer counts and proportional quotas for the rules


def numel(shape: Shape) -> int:
    return math.prod(shape)


def allocate(name: str, shapes: Sequence[Shape], n_keep: int) -> list[int]:
    """Integer kept counts per layer of allocation ``name`` for a budget of ``n_keep`` weights."""
    quotas = ALLOCATIONS.get(name).rule(shapes, n_keep)
    return integer_counts(quotas, [numel(s) for s in shapes], n_keep)


def integer_counts(quotas: Sequence[float], sizes: Sequence[int], n_keep: int) -> list[int]:
    """Largest-remainder integers: each layer ⌊q⌋ or ⌈q⌉ of its quota, total exactly ``n_keep``.

    Extra units go to the largest fractional parts (ties: the earlier layer), then to any layer
    with room. A layer left with none takes one from the layer keeping the most (ties: the
    earlier), as long as that one keeps more than one: a layer keeps at least one weight
    whenever ``n_keep`` ≥ the number of layers.
    """
    if not 0 <= n_keep <= sum(sizes):
        raise ValueError(f"cannot keep {n_keep} of {sum(sizes)} weights")
    keep = [min(max(math.floor(q), 0), n) for q, n in zip(quotas, sizes, strict=True)]
    order = sorted(range(len(sizes)), key=lambda i: (-(quotas[i] - math.floor(quotas[i])), i))
    extra = n_keep - sum(keep)
    for i in order:  # one each to the largest remainders
        if extra > 0 and keep[i] < sizes[i] and keep[i] < quotas[i]:
            keep[i] += 1
            extra -= 1
    for i in order:  # rounding or caps left units over: any layer with room, then too many
        add = max(min(sizes[i] - keep[i], extra), -keep[i])
        keep[i] += add
        extra -= add
    for i in range(len(keep)):
        if keep[i] == 0:
            donor = max(range(len(keep)), key=lambda j: (keep[j], -j))
            if keep[donor] > 1:
                keep[donor] -= 1
                keep[i] += 1
    return keep


def proportional(
    sizes: Sequence[int], raw: Sequence[float], budget: float, fixed: dict[int, float] | None = None
) -> list[float]:
    """Quotas ε·raw_l·n_l meeting ``budget``; layers where ε·raw_l > 1 are made dense.

    As in RigL's and jaxpruner's ERK: ε is solved over the non-dense layers, the layers of the
    largest raw density are made dense when ε·raw exceeds 1, and ε is solved again. ``fixed``
    layers (index → quota) are kept as given and taken out of the budget first.
    """
    fixed = dict(fixed or {})
    dense: set[int] = set()
    while True:
        free = [i for i in range(len(sizes)) if i not in fixed and i not in dense]
        rest = budget - sum(fixed.values()) - sum(sizes[i] for i in dense)
        divisor = sum(raw[i] * sizes[i] for i in free)
        if rest < -1e-9 * max(budget, 1) or (not free and rest > 1e-9 * max(budget, 1)):
            raise ValueError(f"no allocation keeps {budget:g} weights under these constraints")
        eps = rest / divisor if divisor > 0 else 0.0
        top = max((raw[i] for i in free), default=0.0)
        if not free or eps * top <= 1:
            break
        dense |= {i for i in free if raw[i] == top}
    out = [0.0] * len(sizes)
    for i in range(len(sizes)):
        out[i] = (
            fixed[i] if i in fixed else float(sizes[i]) if i in dense else eps * raw[i] * sizes[i]
        )
    return out
