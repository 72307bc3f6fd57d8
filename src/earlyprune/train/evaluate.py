"""Evaluation of a network over a pass of batches, and the autocast rule shared by training.

The pass is summed on the device and read back once at its end: a read per batch would make
the host wait for the GPU at every batch.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["autocast", "evaluate"]


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[None]:
    """bfloat16 autocast for "bf16"; nothing for the float32 precisions (fp32, tf32)."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def evaluate(
    model: nn.Module,
    batches: Iterator[tuple[Tensor, Tensor]],
    *,
    precision: str = "fp32",
    channels_last: bool = False,
) -> tuple[float, float]:
    """Accuracy (fraction) and mean loss over ``batches``, in eval mode; mode restored after."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total = 0
    # Summed on the device and read once per pass; float64 adds of the float32 losses in the
    # same order are bit for bit the Python sum of ``float(loss)`` read per batch.
    sums = torch.zeros(2, dtype=torch.float64, device=device)  # loss, correct
    with torch.no_grad(), autocast(device, precision):
        for x, y in batches:
            if channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            out = model(x).float()
            sums[0] += F.cross_entropy(out, y, reduction="sum").double()
            sums[1] += (out.argmax(1) == y).sum()
            total += y.numel()
    model.train(was_training)
    loss_sum, correct = sums.tolist()
    return int(correct) / max(total, 1), loss_sum / max(total, 1)


def epoch_point(
    model: nn.Module,
    bundle: Any,
    sched: Any,
    step: int,
    train_loss: float,
    precision: str,
    channels_last: bool,
    device: torch.device,
) -> dict[str, Any]:
    """The learning-curve point at ``step``: epoch, LR, training loss, test accuracy and loss."""
    acc, test_loss = evaluate(
        model,
        bundle.test_batches(max(sched.batch_size, 256), device=device),
        precision=precision,
        channels_last=channels_last,
    )
    return {
        "epoch": math.ceil(step / sched.steps_per_epoch),
        "step": step,
        "lr": sched.lr_at(step - 1),
        "train_loss": train_loss,
        "test_loss": test_loss,
        "test_accuracy": acc,
    }
