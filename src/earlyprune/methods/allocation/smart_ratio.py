"""``smart_ratio`` (Su et al., NeurIPS 2020, "Sanity-checking pruning methods: random tickets").

Layer l of L (network order, 1-based) keeps a fraction ∝ (L−l+1)² + (L−l+1) (their code's
default rule, the ResNet form); linear layers keep 30 % (their ``linear_keep_ratio``), or the
overall density if that is lower; the convolutions share the rest, made dense where the fraction
would exceed 1 (ε re-solved). Without convolutions, or when they cannot absorb the rest, the
linear layers share it uniformly.
"""

from __future__ import annotations

from collections.abc import Sequence

from earlyprune.methods.allocation.base import Shape, numel, proportional, register_allocation

LINEAR_KEEP = 0.3


@register_allocation("smart_ratio", summary="keep ∝ (L-l+1)²+(L-l+1), linear 30 % (Su 2020)")
def smart_ratio(shapes: Sequence[Shape], n_keep: int) -> list[float]:
    sizes = [numel(s) for s in shapes]
    big = len(shapes)
    raw = [float((big - i) ** 2 + (big - i)) for i in range(big)]
    linear = [i for i, s in enumerate(shapes) if len(s) == 2]
    conv_room = sum(n for i, n in enumerate(sizes) if i not in linear)
    share = min(LINEAR_KEEP, n_keep / sum(sizes))
    fixed = {i: share * sizes[i] for i in linear}
    if conv_room == 0 or n_keep - sum(fixed.values()) > conv_room:  # convs dense, linear share
        fixed = {i: float(sizes[i]) for i in range(big) if i not in linear}
        raw = [1.0] * big
    return proportional(sizes, raw, n_keep, fixed=fixed)
