"""``uniform_plus`` (Gale et al., 2019, "The state of sparsity in deep neural networks").

The first layer stays dense, the output layer (the last prunable tensor) keeps at least 20 %,
and every other layer keeps the same fraction, chosen so the total meets the budget exactly.
When the budget is too small for that, the first layer (then the output layer) keeps as many
as it allows, leaving at least one weight to every other layer.
"""

from __future__ import annotations

from collections.abc import Sequence

from earlyprune.methods.allocation.base import Shape, numel, proportional, register_allocation

OUTPUT_MIN_DENSITY = 0.2


@register_allocation(
    "uniform_plus", summary="first layer dense, output layer ≥ 20 %, the rest uniform (Gale 2019)"
)
def uniform_plus(shapes: Sequence[Shape], n_keep: int) -> list[float]:
    sizes = [numel(s) for s in shapes]
    if len(sizes) < 3:  # no layer between the first and the output one: plain uniform
        return [n_keep * n / sum(sizes) for n in sizes]
    last, others = len(sizes) - 1, len(sizes) - 2
    # Dense where the budget allows, leaving at least one weight to every other layer.
    fixed = {0: float(min(sizes[0], max(n_keep - others - 1, 0)))}
    quotas = proportional(sizes, [1.0] * len(sizes), n_keep, fixed=fixed)
    if quotas[last] < OUTPUT_MIN_DENSITY * sizes[last]:  # too sparse for the output layer
        room = max(n_keep - fixed[0] - others, 0)
        fixed[last] = min(OUTPUT_MIN_DENSITY * sizes[last], room)
        quotas = proportional(sizes, [1.0] * len(sizes), n_keep, fixed=fixed)
    return quotas
