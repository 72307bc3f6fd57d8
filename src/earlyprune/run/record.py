"""The result record of a run (``result.json``): what it reached and under what it ran."""

from __future__ import annotations

import dataclasses
import json
import platform
from datetime import UTC, datetime
from typing import Any

import torch
from torch import nn

from earlyprune import __version__
from earlyprune.masks.connectivity import effective_mask, is_disconnected
from earlyprune.masks.density import layer_density, neuron_collapse, overall_density
from earlyprune.masks.flops import flops_record
from earlyprune.masks.mask import Mask, full_mask
from earlyprune.methods import sparse_training
from earlyprune.run import numerics
from earlyprune.run.environment import record as environment_record
from earlyprune.run.spec import PRESETS
from earlyprune.run.stages import Setup
from earlyprune.train.loop import TrainState

#: Channel-sparsity thresholds recorded for the neuron-collapse analysis (1.0 = fully pruned).
COLLAPSE_THRESHOLDS = (0.5, 0.8, 0.9, 0.95, 0.99, 1.0)


def preset_fingerprint(name: str) -> dict[str, Any]:
    """The preset's hyperparameters as stored in ``result.json`` (JSON types: lists, not tuples)."""
    return json.loads(json.dumps(dataclasses.asdict(PRESETS.get(name))))


def record(
    setup: Setup, model: nn.Module, mask: Mask | None, state: TrainState, seconds: float
) -> dict[str, Any]:
    """The result record (``result.json``)."""
    mask = mask if mask is not None else full_mask(model)
    effective = effective_mask(model, mask, tuple(setup.bundle.input_shape))
    collapse = [neuron_collapse(model, mask, t) for t in COLLAPSE_THRESHOLDS]
    accs = [c["test_accuracy"] for c in state.curve]
    ok = not state.diverged and bool(accs)
    # Every input→output path cut (allow_disconnected; every sweep): trained as the paper does,
    # an outcome at chance accuracy rather than a failure, and labelled as what it is.
    status = "diverged" if not ok else "disconnected" if is_disconnected(effective) else "ok"
    return {
        **_header(setup, status, None, seconds),
        "test_accuracy": accs[-1] if ok else None,
        "best_test_accuracy": max(accs) if ok else None,
        "test_loss": state.curve[-1]["test_loss"] if ok else None,
        "density": overall_density(mask),
        "layer_density": layer_density(mask),
        # Weights on some input→output path (Vysogorets & Kempe 2021); ≤ density.
        "effective_density": overall_density(effective),
        "layer_effective_density": layer_density(effective),
        "layer_numel": {n: m.numel() for n, m in mask.items()},
        "flops": flops_record(model, setup.bundle.input_shape, mask),
        "neuron_collapse": {
            "thresholds": list(COLLAPSE_THRESHOLDS),
            "overall": [c["overall"] for c in collapse],
            "per_layer": {
                n: [c["per_layer"][n] for c in collapse] for n in collapse[0]["per_layer"]
            },
        },
        "curve": state.curve,
        "steps_trained": state.step,
        **sparse_training.describe(setup.spec, setup.sched.total_steps),
    }


#: What a run that met an op without a deterministic CUDA kernel can do (appended to its error).
NO_DETERMINISTIC_KERNEL = (
    "an fp32 run on CUDA allows deterministic kernels only; this operation has none: replace it "
    "(e.g. F.adaptive_avg_pool2d(x, 1) by x.mean((2, 3))), or run with --autotune "
    "(nondeterministic kernels, its own run id)"
)


def failure(setup: Setup, exc: BaseException, seconds: float) -> dict[str, Any]:
    """The record of a run that raised: its error message, where it was raised, no numbers."""
    message = f"{type(exc).__name__}: {exc}{raised_at(exc)}"
    if "does not have a deterministic implementation" in str(exc):
        message += f" [{NO_DETERMINISTIC_KERNEL}]"
    return {
        **_header(setup, "failed", message, seconds),
        "test_accuracy": None,
        "best_test_accuracy": None,
    }


def raised_at(exc: BaseException) -> str:
    """`` (at FILE, line N)``: the deepest frame outside torch, so that a bug in a user's scoring
    function (or ours) is named by its file and line; empty without a traceback."""
    import os
    import traceback

    home = os.path.dirname(torch.__file__)
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(home)]
    return f" (at {frames[-1].filename}, line {frames[-1].lineno})" if frames else ""


def _header(setup: Setup, status: str, error: str | None, seconds: float) -> dict[str, Any]:
    spec = setup.spec
    return {
        "run_id": spec.run_id,
        # The effective prune step, so that analyses group runs by what was actually done.
        "spec": {**spec.to_dict(), "prune_step": setup.prune_step},
        "status": status,
        "error": error,
        "prune_step": setup.prune_step,
        "total_steps": setup.sched.total_steps,
        "preset": preset_fingerprint(spec.preset),
        "numerics_version": numerics.NUMERICS_VERSION,
        # What training actually used, in steps (the preset's values where the spec left them).
        "schedule": json.loads(json.dumps(dataclasses.asdict(setup.sched))),  # as stored
        "timings": {"total_s": round(seconds, 3)},
        "environment": environment_record(setup),
        "versions": {
            "earlyprune": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "device": str(setup.device),
        },
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
