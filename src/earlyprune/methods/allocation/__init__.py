"""Allocations, one file each; importing this package registers them."""

from earlyprune.methods.allocation import er, erk, smart_ratio, uniform, uniform_plus  # noqa: F401
from earlyprune.methods.allocation.base import (
    ALLOCATIONS,
    Allocation,
    allocate,
    integer_counts,
    proportional,
    register_allocation,
)

__all__ = [
    "ALLOCATIONS",
    "Allocation",
    "allocate",
    "integer_counts",
    "proportional",
    "register_allocation",
]
