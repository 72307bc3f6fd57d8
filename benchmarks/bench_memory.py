"""Peak memory of scoring ResNet-50 with each method, one fresh subprocess per measurement.

In each child: build ResNet-50 (1000 classes), make a small ImageNet-like batch, reset the
kernel's peak-RSS counter (``/proc/self/clear_refs``), run the method's scorer (SynFlow: two
rounds, the second on a 90 % mask) or the whole ``ep.prune`` to 90 % sparsity, and read the
peak (``VmHWM``). Children run with ``MALLOC_MMAP_THRESHOLD_`` so that freed blocks leave the
RSS. Reported per method, over the model's own weight bytes (parameters + buffers): the peak's
growth while scoring, the returned scores' size, and the working memory beyond the scores in
copies of the scores' size (SynFlow's float64 network copy counts as one copy). The input is
small (4 × 3 × 64 × 64) so that weight-sized copies, not activations, dominate; the activation
share is estimated by rerunning with the batch doubled. On CUDA the children report
``torch.cuda.max_memory_allocated`` growth instead.

Target: no scorer keeps more than one extra copy of the weights (``working_copies`` ≤ 1).

Usage: ``python benchmarks/bench_memory.py [--device cpu|cuda] [--quick|--tiny]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from _common import base_parser, measure_and_emit

#: size → (model, num_classes, batch, image side)
SIZES = {
    "full": ("resnet50", 1000, 4, 64),
    "quick": ("resnet50", 1000, 4, 64),
    "tiny": ("resnet20", 10, 2, 32),
}


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(method: str, mode: str, device_name: str, spec: str) -> None:
    """Measures one method in this (fresh) process and prints one JSON line.

    ``mode`` "score": the method's scorer alone (SynFlow: two rounds, the second with a 90 %
    mask made beforehand); "prune": the whole ``ep.prune`` (scorer and mask selection).
    """
    import earlyprune as ep
    from earlyprune.methods.scoring import METHODS

    model_name, classes, batch, side = (int(v) if v.isdigit() else v for v in spec.split(","))
    device = torch.device(device_name)
    model = ep.create_model(model_name, classes, input_shape=(3, side, side), seed=0).to(device)
    weight_bytes = sum(
        t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()]
    )
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, side, side, generator=gen).to(device)
    y = torch.randint(0, classes, (batch,), generator=gen).to(device)
    rounds = min(METHODS.get(method).rounds, 2)
    masks = [ep.prune(model, "random", s, seed=0) for s in (0.0, 0.9)[:rounds]]
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    else:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        before = _status_kib("VmRSS") * 1024
    scores_bytes = 0
    if mode == "score":
        scorer = METHODS.get(method).prepare(model, (x, y), 0)
        total = sum(m.numel() for m in masks[0].values())
        for mask in masks:
            # PHEW's scorer takes the survivor count: that of a 90 % prune.
            budget = (total - round(0.9 * total),) if METHODS.get(method).budgeted else ()
            scores = scorer(mask, *budget)
            scores_bytes = sum(t.numel() * t.element_size() for t in scores.values())
            del scores
    else:
        ep.prune(model, method, 0.9, batch=(x, y), rounds=rounds)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = _status_kib("VmHWM") * 1024
    print(
        json.dumps(
            {
                "before": before,
                "peak": peak,
                "weight_bytes": weight_bytes,
                "scores_bytes": scores_bytes,
                "rounds": rounds,
            }
        )
    )


def run_child(method: str, mode: str, device: str, size: str, batch_scale: int) -> dict[str, Any]:
    model, classes, batch, side = SIZES[size]
    cmd = [
        sys.executable,
        __file__,
        "--child",
        method,
        "--mode",
        mode,
        "--device",
        device,
        "--child-spec",
        f"{model},{classes},{batch * batch_scale},{side}",
    ]
    # Every block from 128 KiB up gets its own mapping, returned to the system when freed, so
    # the RSS follows live memory instead of glibc's heap reusing earlier garbage unseen.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"memory child for {method} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(device: torch.device, size: str, only: list[str] | None = None) -> dict[str, Any]:
    from earlyprune.methods.scoring import METHODS

    model, _, batch, side = SIZES[size]
    per: dict[str, Any] = {}
    # The smoke-test size checks the plumbing with two methods and one child each.
    methods = ["magnitude", "synflow"] if size == "tiny" else only or METHODS.names()
    for method in methods:
        one = run_child(method, "score", str(device), size, 1)
        two = one if size == "tiny" else run_child(method, "score", str(device), size, 2)
        whole = one if size == "tiny" else run_child(method, "prune", str(device), size, 1)
        w = one["weight_bytes"]
        extra, extra2 = one["peak"] - one["before"], two["peak"] - two["before"]
        per[method] = {
            "score_peak_over_weights": round(extra / w, 2),
            "scores_over_weights": round(one["scores_bytes"] / w, 2),
            # Working memory beyond the returned scores, in copies of the scores' own size
            # (float64 for SynFlow: its float64 copy of the network counts as one copy).
            "working_copies": round((extra - one["scores_bytes"]) / one["scores_bytes"], 2),
            "activation_share_estimate": round(max(extra2 - extra, 0) / w, 2),
            "prune_peak_over_weights": round((whole["peak"] - whole["before"]) / w, 2),
            "rounds": one["rounds"],
        }
    return {
        "benchmark": "memory",
        "model": model,
        "input": [batch, 3, side, side],
        "weight_mib": round(one["weight_bytes"] / 2**20, 1),
        "measure": "cuda max_memory_allocated" if device.type == "cuda" else "VmHWM - VmRSS",
        "methods": per,
        "max_working_copies": max(v["working_copies"] for v in per.values()),
    }


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: measure one method
    parser.add_argument("--child-spec", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="score", help=argparse.SUPPRESS)
    parser.add_argument("--methods", nargs="+", metavar="NAME", help="only these methods")
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.mode, args.device, args.child_spec)
        return None
    return measure_and_emit(lambda device, size: measure(device, size, args.methods), args)


if __name__ == "__main__":
    main()
