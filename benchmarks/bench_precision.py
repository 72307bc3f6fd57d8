"""Accuracy and speed effect of bf16 autocast on the embedded dataset, through the real pipeline.

Dense runs of ``earlyprune.run.pipeline.run`` on ``fashion-mnist-mini`` with the ``demo`` preset,
fp32 (the default) and bf16 (``precision="bf16"``), same seeds, in a temporary store: the demo
network (``smallcnn``) and ResNet-20 (fewer epochs). Reports each run's test accuracy and wall
time and the mean accuracy difference bf16 − fp32 per network. This is the evidence for (or
against) making bf16 the default; the default itself lives in ``RunSpec``.

Usage: ``python benchmarks/bench_precision.py [--device cpu|cuda] [--quick|--tiny]``.
"""

from __future__ import annotations

import statistics
import tempfile
from typing import Any

import torch
from _common import base_parser, measure_and_emit

from earlyprune.run.pipeline import run
from earlyprune.run.spec import RunSpec
from earlyprune.run.store import RunStore

#: size → [(model, epochs or None for the preset's, seeds)]
SIZES: dict[str, list[tuple[str, float | None, tuple[int, ...]]]] = {
    "full": [("smallcnn", None, (0, 1, 2, 3, 4)), ("resnet20", 2.0, (0, 1, 2))],
    "quick": [("smallcnn", None, (0, 1)), ("resnet20", 1.0, (0,))],
    "tiny": [("smallcnn", 0.25, (0,))],
}


def measure(device: torch.device, size: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "benchmark": "precision",
        "dataset": "fashion-mnist-mini",
        "preset": "demo",
        "networks": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(tmp)
        for model, epochs, seeds in SIZES[size]:
            runs: dict[str, list[dict[str, float]]] = {"fp32": [], "bf16": []}
            for seed in seeds:
                for precision in ("fp32", "bf16"):  # same seed back to back: same load
                    spec = RunSpec(
                        model=model,
                        epochs=epochs,
                        seed=seed,
                        precision=precision,
                        device=str(device),
                    )
                    result = run(spec, store, progress=False)
                    if result["status"] != "ok":
                        raise RuntimeError(f"{spec} ended {result['status']}: {result['error']}")
                    runs[precision].append(
                        {
                            "seed": seed,
                            "test_accuracy": result["test_accuracy"],
                            "seconds": result["timings"]["total_s"],
                        }
                    )
            acc = {p: [r["test_accuracy"] for r in v] for p, v in runs.items()}
            secs = {p: [r["seconds"] for r in v] for p, v in runs.items()}
            out["networks"][model] = {
                "epochs": epochs if epochs is not None else "preset",
                "runs": runs,
                "mean_accuracy": {p: round(statistics.mean(v), 4) for p, v in acc.items()},
                "bf16_minus_fp32": round(
                    statistics.mean(acc["bf16"]) - statistics.mean(acc["fp32"]), 4
                ),
                "fp32_over_bf16_time": round(
                    statistics.median(
                        [a / b for a, b in zip(secs["fp32"], secs["bf16"], strict=True)]
                    ),
                    3,
                ),
            }
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = base_parser(__doc__.splitlines()[0]).parse_args(argv)
    return measure_and_emit(measure, args)


if __name__ == "__main__":
    main()
