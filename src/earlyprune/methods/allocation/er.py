"""``er``: Erdős–Rényi (Mocanu et al., 2018, SET), density ∝ (n_in + n_out)/(n_in·n_out).

Kernel sizes do not enter (for a conv weight (n_out, n_in, k_h, k_w) only n_in and n_out do, as
in RigL's ``erdos_renyi`` without ``include_kernel``); ε solved as for ``erk``, dense re-solve
included.
"""

from __future__ import annotations

from collections.abc import Sequence

from earlyprune.methods.allocation.base import Shape, numel, proportional, register_allocation


@register_allocation("er", summary="density ∝ (n_in+n_out)/(n_in·n_out) (Mocanu 2018)")
def er(shapes: Sequence[Shape], n_keep: int) -> list[float]:
    raw = [(s[0] + s[1]) / (s[0] * s[1]) for s in shapes]
    return proportional([numel(s) for s in shapes], raw, n_keep)
