"""Pruning at initialization (step 0): score the freshly initialized network, then train it."""

from __future__ import annotations

from earlyprune.run.recipes.base import Recipe


class AtInit(Recipe):
    """Every default of ``Recipe``: scored at init, trained from the same init."""

    name = "at_init"
