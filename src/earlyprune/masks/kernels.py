"""The exact order-statistic kernel for mask selection, chosen per device.

Selection needs the k-th smallest score. ``torch.kthvalue`` is a selection on the CPU (linear
time, the fastest there) but on CUDA it is about 20× slower than sorting the same vector (an
open PyTorch issue), so on CUDA the k-th entry of ``torch.sort`` is taken instead. Both return
the same value — an order statistic has one value, whatever finds it — except that where +0.0
and −0.0 tie, either may come back; they compare equal, so every mask built from the threshold
(``<``, ``==``, ``>=``) is the same.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["KERNELS", "kernel_for", "kth_smallest"]

#: Kernel names accepted by :func:`kth_smallest`.
KERNELS = ("kthvalue", "sort")


def kernel_for(device: torch.device | str) -> str:
    """The faster exact kernel on ``device``: "sort" on CUDA, "kthvalue" elsewhere."""
    return "sort" if torch.device(device).type == "cuda" else "kthvalue"


def kth_smallest(values: Tensor, k: int, kernel: str | None = None) -> Tensor:
    """The ``k``-th smallest entry (1-based) of the 1-D ``values``, as a 0-dim tensor.

    Args:
        values: A 1-D tensor without NaN.
        k: Rank, 1 ≤ k ≤ len(values).
        kernel: "kthvalue" or "sort"; default: :func:`kernel_for` the values' device.

    Raises:
        ValueError: ``k`` out of range or an unknown kernel.
    """
    if not 1 <= k <= values.numel():
        raise ValueError(f"k must lie in [1, {values.numel()}], got {k}")
    kernel = kernel or kernel_for(values.device)
    if kernel == "kthvalue":
        return torch.kthvalue(values, k).values
    if kernel == "sort":
        return torch.sort(values).values[k - 1]
    raise ValueError(f"unknown selection kernel {kernel!r}; choose one of: {', '.join(KERNELS)}")
