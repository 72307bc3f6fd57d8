"""Scoring methods, one file each; importing this package registers them all."""

from earlyprune.scoring import grasp, magnitude, random, snip, synflow  # noqa: F401  (register)
from earlyprune.scoring import (  # noqa: F401  (register the modern baselines)
    force,
    iter_snip,
    ntk_sap,
    phew,
    prospr,
    synflow_l2,
)
from earlyprune.scoring.base import (
    METHODS,
    Batch,
    Method,
    method_from_function,
    preserved_state,
    register_method,
)

__all__ = [
    "METHODS",
    "Batch",
    "Method",
    "method_from_function",
    "preserved_state",
    "register_method",
]
