"""Scoring methods, one file each; importing this package registers them all."""

from earlyprune.scoring import grasp, lamp, magnitude, random, snip, synflow  # noqa: F401  (register)
from earlyprune.scoring.base import (
    METHODS,
    Batch,
    Method,
    method_from_function,
    preserved_state,
    register_method,
)

# isort: split
# After the scorers: allocations register their baseline methods (erk, uniform, ...) too.
import earlyprune.allocation  # noqa: E402, F401

__all__ = [
    "METHODS",
    "Batch",
    "Method",
    "method_from_function",
    "preserved_state",
    "register_method",
]
