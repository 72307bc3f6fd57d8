"""The up-front memory check's estimate for a paper preset, k = 1, 2, 4, 8 (measured on the CPU).

For ResNet-50 on ImageNet-shaped input (224², 1000 classes, the resnet50_imagenet preset's batch
1024, SGD with momentum) in fp32 and bf16: ``train.memory_need.measure_step`` (the tensors
autograd saves in real CPU forwards of 2 and 4 examples, the gradients and the optimizer state
of one real step) and the need of one step in k micro-batches, against a card's memory (default
80 GB, an H100's 79.2 GiB as CUDA reports it). Nothing runs on a GPU: the numbers are the
estimate the check would compare, not a measurement of one.

Usage: ``python benchmarks/step_memory.py [--tiny] [--card-gib G]`` (``--tiny``: ResNet-20 at
32², batch 128, 10 classes). Prints a table to stderr and one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import torch
from _common import context, emit

import earlyprune as ep
from earlyprune.train.memory_need import StepMemory, measure_step
from earlyprune.train.optim import Schedule

GIB = 1 << 30
#: An H100 80GB's total memory as ``torch.cuda.get_device_properties`` reports it (79.2 GiB).
H100_BYTES = 85_031_714_816
#: size → (model, classes, image side, batch)
SIZES = {"full": ("resnet50", 1000, 224, 1024), "tiny": ("resnet20", 10, 32, 128)}


def measure(size: str, card: int) -> dict[str, Any]:
    model_name, classes, side, batch = SIZES[size]
    sched = Schedule(10, 10, batch, 0.4, ())  # SGD, momentum 0.9: one momentum buffer
    out: dict[str, Any] = {"model": model_name, "side": side, "batch": batch}
    out["card_gib"] = round(card / GIB, 1)
    for precision in ("fp32", "bf16"):
        model = ep.create_model(model_name, classes, input_shape=(3, side, side), seed=0)
        start = time.perf_counter()
        step = measure_step(model, sched, (3, side, side), classes, precision)
        row: dict[str, Any] = {"measure_s": round(time.perf_counter() - start, 1)}
        row["saved_mib_per_example"] = round(step.saved_per_example / 2**20, 2)
        row["weights_grads_optimizer_gib"] = round(
            (step.params + step.grads + step.optimizer) / GIB, 3
        )
        for k in (1, 2, 4, 8):
            row[f"k={k}"] = round(step.need(batch, batch // k) / GIB, 1)
        row["smallest_k"] = _smallest_k(step, batch, card)
        out[precision] = row
    return out


def _smallest_k(step: StepMemory, batch: int, card: int) -> int | None:
    fits = [
        k for k in range(1, batch + 1) if not batch % k and step.need(batch, batch // k) <= card
    ]
    return fits[0] if fits else None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="ResNet-20 at 32²: seconds")
    parser.add_argument("--card-gib", type=float, default=H100_BYTES / GIB)
    args = parser.parse_args(argv)
    size = "tiny" if args.tiny else "full"
    ctx = context(torch.device("cpu"))
    result = {"benchmark": "step_memory", **measure(size, round(args.card_gib * GIB)), **ctx}
    result["size"] = size
    for precision in ("fp32", "bf16"):
        row = result[precision]
        needs = ", ".join(f"k={k}: {row[f'k={k}']} GiB" for k in (1, 2, 4, 8))
        print(f"{precision}: {needs}; smallest k: {row['smallest_k']}", file=sys.stderr)
    emit(result)
    return result


if __name__ == "__main__":
    main()
