"""``uniform``: every layer keeps the same fraction of its weights."""

from __future__ import annotations

from collections.abc import Sequence

from earlyprune.methods.allocation.base import Shape, numel, register_allocation


@register_allocation("uniform", summary="every layer keeps the same fraction (n_keep / N)")
def uniform(shapes: Sequence[Shape], n_keep: int) -> list[float]:
    """Quota d·n_l for every layer, d = n_keep / N."""
    sizes = [numel(s) for s in shapes]
    return [n_keep * n / sum(sizes) for n in sizes]
