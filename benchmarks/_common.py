"""Shared helpers of the benchmark scripts: device choice, timing, interleaved A/B, context.

Benchmarks share the machine with whatever else runs on it, so every comparison is taken
within one process as interleaved repetitions and summarized by medians; the load average
before and after is reported next to the numbers so that noisy runs can be recognized.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from earlyprune.data import TensorBundle, TensorSplit

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def base_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark takes."""
    parser = argparse.ArgumentParser(description=description)
    default = "cuda" if torch.cuda.is_available() else "cpu"
    parser.add_argument("--device", default=default, help=f"cpu or cuda (default: {default})")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="fewer repetitions (about a third)")
    size.add_argument("--tiny", action="store_true", help="smoke-test size: seconds, no meaning")
    return parser


def size_of(args: argparse.Namespace) -> str:
    """ "full", "quick" or "tiny"."""
    return "tiny" if args.tiny else "quick" if args.quick else "full"


def sync(device: torch.device) -> None:
    """Waits for queued GPU work so that wall-clock timings cover it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, fn: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds ``fn()`` takes (GPU work included) and its result."""
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def rate(items_per_step: int, stamps: Sequence[float]) -> float:
    """Items per second from step end times (``stamps[0]`` = start), using the median step."""
    return items_per_step / median([b - a for a, b in itertools.pairwise(stamps)])


def interleaved(arms: dict[str, Callable[[], float]], repetitions: int) -> dict[str, list[float]]:
    """Runs each arm once per repetition, in rotating order, and collects their results.

    Rotating the order keeps a slow phase of the machine (another job starting) from always
    landing on the same arm.
    """
    names = list(arms)
    out: dict[str, list[float]] = {n: [] for n in names}
    for rep in range(repetitions):
        for i in range(len(names)):
            name = names[(rep + i) % len(names)]
            out[name].append(arms[name]())
    return out


def median_ratio(num: Sequence[float], den: Sequence[float]) -> float:
    """Median over repetitions of the per-repetition ratio ``num[i] / den[i]``."""
    return median([a / b for a, b in zip(num, den, strict=True)])


def synthetic_cifar(n_train: int, n_test: int = 256, seed: int = 0) -> TensorBundle:
    """Random CIFAR-shaped uint8 images with the paper's CIFAR augmentation (shift 4, flip)."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n_train + n_test, 3, 32, 32), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 10, (n_train + n_test,), generator=gen)
    return TensorBundle(
        name="synthetic-cifar",
        num_classes=10,
        mean=CIFAR_MEAN,
        std=CIFAR_STD,
        train=TensorSplit(images[:n_train], labels[:n_train]),
        test=TensorSplit(images[n_train:], labels[n_train:]),
        shift=4,
        flip=True,
    )


def context(device: torch.device) -> dict[str, Any]:
    """Where a number was measured: device, threads, versions, load average."""
    name = str(device)
    if device.type == "cuda":
        name = f"{device} ({torch.cuda.get_device_name(device)})"
    elif device.type == "cpu":
        name = f"cpu ({os.cpu_count()} cores, {platform.machine()})"
    return {
        "device": name,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "loadavg_start": _loadavg(),
    }


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # not available on every platform
        return None


def emit(result: dict[str, Any]) -> None:
    """Prints the benchmark's one JSON object (with the load average at the end)."""
    result["loadavg_end"] = _loadavg()
    print(json.dumps(result, sort_keys=False))


def measure_and_emit(
    measure: Callable[[torch.device, str], dict[str, Any]], args: argparse.Namespace
) -> dict[str, Any]:
    """Runs ``measure(device, size)`` between two readings of the machine's state; prints JSON."""
    device = torch.device(args.device)
    ctx = context(device)  # before measuring: it records the load average at the start
    result = {**measure(device, size_of(args)), **ctx, "size": size_of(args)}
    emit(result)
    return result
