"""Gradient accumulation: one optimizer step's batch as k consecutive micro-batches.

Each micro-batch's loss is its share of the full batch's mean loss (its mean times its size over
the batch's), so the gradients its backward passes add up in ``p.grad`` are the gradient of the
full-batch mean loss, up to the order of float additions. The batch, its order and its
augmentation are those of ``k = 1``: the loop only slices it. What changes is the statistics of
BatchNorm, computed per micro-batch, as on k GPUs without synchronized BatchNorm, and that each
BatchNorm layer's running averages (the test-time statistics) take k updates per step.

Under torchrun each micro-batch is sharded as a whole batch is; DistributedDataParallel
all-reduces the gradients once, in the last micro-batch's backward (``no_sync`` before it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from torch import Tensor, nn

__all__ = ["accumulated_backward", "micro_batches"]

#: (micro-batch inputs, labels, examples in the whole batch) -> that micro-batch's loss share.
LossShare = Callable[[Tensor, Tensor, int], Tensor]


def micro_batches(x: Tensor, y: Tensor, k: int) -> list[tuple[Tensor, Tensor]]:
    """``k`` consecutive slices of a batch (views; sizes differ by at most one, so a short last
    batch of an epoch is split as evenly as it can be); empty ones are left out."""
    if k == 1:
        return [(x, y)]
    return [(a, b) for a, b in zip(x.tensor_split(k), y.tensor_split(k), strict=True) if len(b)]


def accumulated_backward(net: nn.Module, x: Tensor, y: Tensor, k: int, share: LossShare) -> Tensor:
    """Forward and backward over ``k`` micro-batches of (x, y), gradients summed in ``p.grad``.

    Returns:
        The full-batch mean loss (the sum of the micro-batches' shares), detached: what the
        divergence checks read. For ``k = 1`` it is the loss ``share(x, y, len(y))`` itself.
    """
    parts = micro_batches(x, y, k)
    total: Tensor | None = None
    for i, (xm, ym) in enumerate(parts):
        with _syncing(net, last=i == len(parts) - 1):
            loss = share(xm, ym, len(y))
            loss.backward()
        total = loss.detach() if total is None else total + loss.detach()
    assert total is not None  # a batch has at least one example
    return total


def _syncing(net: nn.Module, *, last: bool) -> contextlib.AbstractContextManager[object]:
    """DistributedDataParallel's ``no_sync`` before the last micro-batch: the all-reduce then
    runs once per step, over the summed gradients (nothing for a plain module)."""
    no_sync = getattr(net, "no_sync", None)
    return contextlib.nullcontext() if last or no_sync is None else no_sync()
