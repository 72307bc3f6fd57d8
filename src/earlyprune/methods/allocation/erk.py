"""``erk``: Erdős–Rényi-Kernel (Evci et al., 2020, RigL), density ∝ Σ dims / Π dims.

For a conv weight (n_out, n_in, k_h, k_w) the density is ε·(n_out + n_in + k_h + k_w) /
(n_out·n_in·k_h·k_w); for a linear weight ε·(n_out + n_in)/(n_out·n_in). ε meets the budget;
layers where ε·p > 1 are made dense and ε is solved again (RigL's ``sparse_utils``, jaxpruner's
``sparsity_distributions.erk``). Every prunable layer takes part, the first one included.
"""

from __future__ import annotations

from collections.abc import Sequence

from earlyprune.methods.allocation.base import Shape, numel, proportional, register_allocation


@register_allocation("erk", summary="density ∝ (n_in+n_out+k_h+k_w)/(n_in·n_out·k_h·k_w) (RigL)")
def erk(shapes: Sequence[Shape], n_keep: int) -> list[float]:
    raw = [sum(s) / numel(s) for s in shapes]
    return proportional([numel(s) for s in shapes], raw, n_keep)
