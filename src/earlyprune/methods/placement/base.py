"""Placements: which weights each layer keeps, given its count (the second half of a mask).

A placement is a scorer (``fn(model, batch, mask, seed) -> Scores``, higher = keep): each layer
keeps its top-k scores, k from the allocation, with exact counts and deterministic ties (see
:func:`earlyprune.masks.mask.select_counts`). Any registered scoring method places too: names are
looked up here first, then among the methods.
"""

from __future__ import annotations

from earlyprune.methods.base import (  # noqa: F401  (re-exported: the registry lives low)
    METHODS,
    PLACEMENTS,
    Method,
    register_placement,
)

__registers__ = ()  # helper: looks placement names up (placements, then methods)


def placement_names() -> list[str]:
    """Every valid placement: the registered placements, then the scoring methods."""
    return [*PLACEMENTS.names(), *(n for n in METHODS.names() if n not in PLACEMENTS)]


def resolve_placement(name: str) -> Method:
    """The scorer that places for ``name``; unknown names list the valid ones."""
    if name in PLACEMENTS:
        return PLACEMENTS.get(name)
    if name in METHODS:
        return METHODS.get(name)
    raise ValueError(f"unknown placement {name!r}; choose one of: {', '.join(placement_names())}")
