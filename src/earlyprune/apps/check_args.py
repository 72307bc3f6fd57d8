"""The grid of ``earlyprune check-method`` from its flags: ``--quick``, ``--sparsities``, ``--seeds``.

A bad value is one ``SpecError`` line with an example of a good one, before anything runs.
"""

from __future__ import annotations

import argparse
import dataclasses

from earlyprune.apps.demo import FULL, QUICK, Grid
from earlyprune.core.errors import SpecError


def parse_sparsities(text: str) -> tuple[float, ...]:
    """``"0.9,0.97"`` → (0.9, 0.97): distinct fractions in (0, 1); a ``SpecError`` otherwise."""
    import math

    from earlyprune.run.spec import canonical_sparsity

    values = []
    for part in _parts(text, "--sparsities"):
        try:
            value = float(part)
        except ValueError:
            value = math.nan
        if not (0 < value < 1) or canonical_sparsity(value) in values:
            what = "a repeated" if 0 < value < 1 else "not a"
            raise SpecError(
                f"--sparsities {text!r}: {part!r} is {what} fraction in (0, 1); "
                "write distinct fractions removed, e.g. --sparsities 0.9,0.97"
            )
        values.append(canonical_sparsity(value))
    return tuple(values)


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"0,1,2"`` → (0, 1, 2): distinct integers ≥ 0; a ``SpecError`` otherwise."""
    from earlyprune.run.spec import SEED_LIMIT

    values: list[int] = []
    for part in _parts(text, "--seeds"):
        value = int(part) if part.isdigit() else -1
        if not 0 <= value < SEED_LIMIT or value in values:
            what = "a repeated" if 0 <= value < SEED_LIMIT else "not a"
            raise SpecError(
                f"--seeds {text!r}: {part!r} is {what} seed (an integer ≥ 0); write "
                "distinct seeds, e.g. --seeds 0,1,2,3,4"
            )
        values.append(value)
    return tuple(values)


def _parts(text: str, flag: str) -> list[str]:
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise SpecError(
            f"{flag} {text!r}: give comma-separated values without gaps, e.g. "
            f"{flag} {'0.9,0.97' if flag == '--sparsities' else '0,1,2'}"
        )
    return parts


def grid_from_args(args: argparse.Namespace) -> Grid:
    """The grid of `check-method`: ``--quick`` or the full one, with ``--sparsities``,
    ``--seeds``, ``--model`` and ``--dataset`` in place of its own."""
    grid = dataclasses.replace(
        QUICK if args.quick else FULL, model=args.model, dataset=args.dataset
    )
    if getattr(args, "sparsities", None) is not None:
        grid = dataclasses.replace(grid, sparsities=parse_sparsities(args.sparsities))
    if getattr(args, "seeds", None) is not None:
        grid = dataclasses.replace(grid, seeds=parse_seeds(args.seeds))
    return grid
