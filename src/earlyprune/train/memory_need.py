"""The memory one training step needs, measured on the CPU before a GPU run starts.

A step's peak is taken as: the parameters and buffers, their gradients, the optimizer's state,
the batch on the device, and the tensors autograd saves for backward for one micro-batch, plus
a margin. Nothing comes from a table: the saved tensors are those of real forward passes of 2
and of 4 random examples under ``torch.autograd.graph.saved_tensors_hooks`` (each storage
counted once; the parameters, buffers and the input, counted apart, left out), and grow
linearly with the examples, ``fixed + per_example · n``. Under bf16 the passes run under CPU
autocast, so the saved tensors have the dtypes autocast gives them. The gradients and the
optimizer state are those of one real backward pass and one optimizer step on a copy.

This is an estimate, meant to say at once whether a run can fit a card at all: a cuDNN kernel
may save or need more (its workspace), an in-memory dataset kept on the device
(``data.device``, at most a quarter of the free memory) is left out, and gradients are counted
whole although with k = 1 they are allocated while backward frees activations.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from earlyprune.train.evaluate import autocast
from earlyprune.train.optim import Schedule, make_optimizer

__all__ = ["ACTIVATION_MARGIN", "FIXED_OVERHEAD", "StepMemory", "measure_step", "saved_bytes"]

#: Added to the saved activations: gradients of activations alive during backward, the
#: allocator's rounding and fragmentation.
ACTIVATION_MARGIN = 0.25
#: Added once: the CUDA context and the cuBLAS / cuDNN workspaces (about 0.5 GiB each on an H100).
FIXED_OVERHEAD = 1 << 30
#: The example counts of the two measuring passes (2, not 1: BatchNorm1d needs two values).
_PROBES = (2, 4)


@dataclass(frozen=True)
class StepMemory:
    """What one training step keeps in memory, in bytes (``need`` adds it up)."""

    params: int  # parameters and buffers
    grads: int
    optimizer: int  # the optimizer's state (SGD momentum: one copy; Adam: two)
    saved_fixed: int  # saved for backward whatever the batch (bf16 copies of weights, ...)
    saved_per_example: int  # saved for backward per example of a micro-batch
    example: int  # one input example and its label, on the device

    def saved(self, micro_batch: int) -> int:
        """The bytes autograd saves for backward for ``micro_batch`` examples."""
        return self.saved_fixed + self.saved_per_example * micro_batch

    def need(self, batch: int, micro_batch: int) -> int:
        """Estimated peak of one step: the whole batch on the device, trained in micro-batches
        of ``micro_batch`` examples, with the stated margins."""
        activations = math.ceil(self.saved(micro_batch) * (1 + ACTIVATION_MARGIN))
        state = self.params + self.grads + self.optimizer
        return state + activations + batch * self.example + FIXED_OVERHEAD


def _storages(tensors: Iterator[Tensor]) -> set[int]:
    return {t.untyped_storage().data_ptr() for t in tensors}


def saved_bytes(
    model: nn.Module,
    n: int,
    input_shape: tuple[int, ...],
    num_classes: int,
    precision: str = "fp32",
    channels_last: bool = False,
) -> int:
    """Bytes autograd saves for backward in one training forward of ``n`` random examples on
    the CPU (each storage once; ``model``'s parameters and buffers and the input left out).

    BatchNorm running statistics move: pass a copy of a model that matters.
    """
    return _probe(model, n, input_shape, num_classes, precision, channels_last)[0]


def _probe(
    model: nn.Module,
    n: int,
    input_shape: tuple[int, ...],
    num_classes: int,
    precision: str,
    channels_last: bool,
) -> tuple[int, Tensor]:
    """(saved bytes, the loss) of one forward of ``n`` random examples (see ``saved_bytes``)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((n, *input_shape), generator=gen)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(num_classes, (n,), generator=gen)
    skip = _storages(model.parameters()) | _storages(model.buffers()) | _storages(iter([x]))
    seen: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in skip:  # held until backward: an address is not reused
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with autocast(torch.device("cpu"), precision):
            loss = F.cross_entropy(model(x), y)
    return sum(seen.values()), loss


def measure_step(
    model: nn.Module,
    sched: Schedule,
    input_shape: tuple[int, ...],
    num_classes: int,
    precision: str = "fp32",
    channels_last: bool = False,
) -> StepMemory:
    """Measures ``model``'s step (on a CPU copy; ``model`` is left as it was).

    Args:
        model: The network to train.
        sched: Its schedule (the optimizer whose state is measured).
        input_shape: One example's shape, (channels, height, width).
        num_classes: Outputs of the network.
        precision: "fp32", "tf32" or "bf16" (measured under CPU autocast).
        channels_last: Measure with channels-last inputs and weights.
    """
    net = copy.deepcopy(model).cpu().train()
    if channels_last:
        net.to(memory_format=torch.channels_last)
    large = saved_bytes(net, _PROBES[1], input_shape, num_classes, precision, channels_last)
    small, loss = _probe(net, _PROBES[0], input_shape, num_classes, precision, channels_last)
    per_example = (large - small) // (_PROBES[1] - _PROBES[0])
    loss.backward()  # the gradients, as training allocates them
    optimizer = make_optimizer(net, sched)
    grads = sum(_nbytes(p.grad) for p in net.parameters() if p.grad is not None)
    optimizer.step()  # creates the state (momentum buffers, Adam's moments)
    state = sum(_nbytes(v) for s in optimizer.state.values() for v in s.values())
    tensors = [*net.parameters(), *net.buffers()]
    return StepMemory(
        params=sum(_nbytes(t) for t in tensors),
        grads=grads,
        optimizer=state,
        saved_fixed=max(small - per_example * _PROBES[0], 0),
        saved_per_example=per_example,
        example=4 * math.prod(input_shape) + 8,  # float32 pixels, an int64 label
    )


def _nbytes(value: object) -> int:
    return value.numel() * value.element_size() if isinstance(value, Tensor) else 0
