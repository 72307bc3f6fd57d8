"""Before a run trains on a GPU: refuse it in one line if a step cannot fit the card at all.

The need is ``train.memory_need``'s estimate, measured on the CPU for the run's network, input,
precision and optimizer. It is compared with the card's total memory, not with what is free
now: memory another process holds is the machine's state at this moment (a run that then runs
out of memory is left to resume, ``run.memory``), while a step bigger than the card will never
fit, so it is the user's to change. The line names the need, the card and the smallest
``--accumulate k`` (a divisor of the batch size) whose micro-batches fit.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from earlyprune.core.errors import SpecError
from earlyprune.train.memory_need import (
    ACTIVATION_MARGIN,
    FIXED_OVERHEAD,
    StepMemory,
    measure_step,
)
from earlyprune.train.optim import Schedule

if TYPE_CHECKING:
    from earlyprune.run.spec import RunSpec

GIB = 1 << 30


def check_fits(
    spec: RunSpec, bundle: Any, sched: Schedule, device: torch.device, world: int = 1
) -> None:
    """``SpecError`` when one training step of ``spec`` needs more than ``device`` has (CUDA
    only; nothing is measured for a CPU run). ``world``: torchrun processes sharing a batch."""
    if device.type != "cuda":
        return
    card = torch.cuda.get_device_properties(device).total_memory
    shape, classes = tuple(bundle.input_shape), bundle.num_classes
    step, batchnorm = measured(
        spec.model, shape, classes, sched, spec.precision, spec.channels_last
    )
    batch, k = sched.batch_size, spec.accumulate
    need = step.need(batch, micro_batch(batch, k, world))
    if need <= card:
        return
    what = f"{spec.model} at batch {batch}" + (f" in {k} micro-batches" if k > 1 else "")
    head = (
        f"{what} ({spec.precision}) needs about {need / GIB:.3g} GiB per training step; "
        f"this GPU has {card / GIB:.3g} GiB"
    )
    fits = [j for j in range(k + 1, batch + 1) if not batch % j]
    fits = [j for j in fits if step.need(batch, micro_batch(batch, j, world)) <= card]
    if not fits:
        raise SpecError(f"{head}, and even micro-batches of one example would not fit")
    j, m = fits[0], batch // fits[0]
    flag = "add" if k == 1 else "use"
    bn = (
        f"; BatchNorm statistics then per {m} examples, as on {j} GPUs"
        if batchnorm and world == 1
        else ""
    )
    raise SpecError(f"{head}: {flag} --accumulate {j} (micro-batches of {m}{bn})")


def micro_batch(batch: int, k: int, world: int) -> int:
    """Examples one process trains on at once: its share of one of ``k`` micro-batches."""
    return math.ceil(batch / k / world)


@functools.lru_cache(maxsize=8)
def measured(
    model: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    sched: Schedule,
    precision: str,
    channels_last: bool,
) -> tuple[StepMemory, bool]:
    """The measured step of a registered network, and whether it has BatchNorm (cached: every
    run of a sweep asks again)."""
    from earlyprune.models import create_model

    net = create_model(model, num_classes, input_shape=input_shape, seed=0)
    step = measure_step(net, sched, input_shape, num_classes, precision, channels_last)
    return step, any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())


#: The built-in scorers that differentiate the scoring batch, and the saved-for-backward copies
#: each holds at once per example of a chunk, against one training forward (an estimate, stated):
#: a double backward (GraSP's Hg) holds the graph and its gradient's graph; ProsPr's unrolled
#: M = 3 inner steps hold M + 1 graphs. A user's scorer is not estimated.
SCORING_GRAPHS = {
    "snip": 1,
    "iter_snip": 1,
    "force": 1,
    "grasp": 3,
    "grasp_magnitude": 3,
    "prospr": 4,
}


def check_scoring_fits(spec: RunSpec, bundle: Any, sched: Schedule, device: torch.device) -> None:
    """``SpecError`` when scoring ``spec``'s scoring batch in one piece (or in chunks of
    ``spec.scoring_micro_batch``) needs more than ``device`` has (CUDA, built-in gradient
    scorers only); the line names the largest ``--scoring-micro-batch`` that fits."""
    names = {spec.method, spec.allocation, spec.placement}
    graphs = max((SCORING_GRAPHS.get(n, 0) for n in names if isinstance(n, str)), default=0)
    if device.type != "cuda" or not graphs:
        return
    card = torch.cuda.get_device_properties(device).total_memory
    shape, classes = tuple(bundle.input_shape), bundle.num_classes
    step, _ = measured(spec.model, shape, classes, sched, "fp32", spec.channels_last)
    n = classes * spec.scoring_per_class
    fixed = step.params + step.grads + n * step.example + step.saved_fixed + FIXED_OVERHEAD
    per_example = graphs * step.saved_per_example * (1 + ACTIVATION_MARGIN)
    chunk = min(spec.scoring_micro_batch or n, n)
    need = fixed + per_example * chunk
    if need <= card:
        return
    head = (
        f"scoring {n} examples ({spec.method}) on {spec.model} in chunks of {chunk} needs about "
        f"{need / GIB:.3g} GiB; this GPU has {card / GIB:.3g} GiB"
    )
    fits = int((card - fixed) // per_example)
    if fits < 1:
        raise SpecError(f"{head}, and even one example at a time would not fit")
    k = 1 << (fits.bit_length() - 1)  # the largest power of two that fits
    raise SpecError(f"{head}: add --scoring-micro-batch {k}")
