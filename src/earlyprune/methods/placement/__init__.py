"""Placements, one file each; importing this package registers them."""

from earlyprune.methods.placement import magnitude, random  # noqa: F401  (register)
from earlyprune.methods.placement.base import (
    PLACEMENTS,
    placement_names,
    register_placement,
    resolve_placement,
)

__all__ = ["PLACEMENTS", "placement_names", "register_placement", "resolve_placement"]
