"""gpu_check's ``accumulate`` part: ``--accumulate 2`` against whole batches, and the memory
estimate of the up-front check against the allocator's peak.

* LeNet-300-100 (no batch statistics) trains ``steps`` steps with k = 1 and k = 2 on the device:
  the weights must agree up to float summation order (max |Δ| ≤ 1e-4, reported).
* ResNet-20 at batch 128 (the resnet20_cifar10 preset's), k = 1 and 2: ``train.memory_need``'s
  estimate (measured on the CPU) and, on CUDA, ``torch.cuda.max_memory_allocated`` over a few
  training steps. The allocator's peak leaves out the CUDA context and the library workspaces
  held outside it, so it is set against the estimate without ``FIXED_OVERHEAD``.
"""

from __future__ import annotations

from typing import Any

import torch

import earlyprune as ep
from earlyprune.train.loop import train
from earlyprune.train.memory_need import FIXED_OVERHEAD, measure_step
from earlyprune.train.modes import Modes
from earlyprune.train.optim import Schedule

MIB = 1 << 20
TOLERANCE = 1e-4


def accumulate_part(device: torch.device, bundle: Any, steps: int, batch: int) -> dict[str, Any]:
    """The part's report (``AssertionError`` when k = 2 moves LeNet's weights elsewhere)."""
    sched = Schedule(steps, -(-len(bundle.train) // batch), batch, 0.1, ())
    weights = {}
    for k in (1, 2):
        model = ep.create_model("lenet_300_100", 10, input_shape=(3, 32, 32), seed=0).to(device)
        train(model, bundle, sched, seed=5, modes=Modes(accumulate=k), progress=False)
        weights[k] = model.state_dict()
    diff = max(float((weights[1][n] - weights[2][n]).abs().max()) for n in weights[1])
    if diff > TOLERANCE:
        raise AssertionError(f"accumulate 2 moved LeNet's weights by {diff:.3g} from k = 1")
    out: dict[str, Any] = {"steps": steps, "batch": batch, "lenet_k2_max_abs_diff": diff}
    out["resnet20_memory"] = _memory(device, bundle, min(steps, 3))
    return out


def _memory(device: torch.device, bundle: Any, steps: int, batch: int = 128) -> dict[str, Any]:
    sched = Schedule(steps, -(-len(bundle.train) // batch), batch, 0.1, ())
    model = ep.create_model("resnet20", 10, seed=0)
    step = measure_step(model, sched, (3, 32, 32), 10)
    out: dict[str, Any] = {"batch": batch}
    for k in (1, 2):
        need = step.need(batch, batch // k)
        row: dict[str, Any] = {"estimate_mib": round(need / MIB, 1)}
        row["estimate_without_overhead_mib"] = round((need - FIXED_OVERHEAD) / MIB, 1)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            net = ep.create_model("resnet20", 10, seed=0).to(device)
            train(net, bundle, sched, seed=5, modes=Modes(accumulate=k), progress=False)
            peak = torch.cuda.max_memory_allocated(device)
            row["max_memory_allocated_mib"] = round(peak / MIB, 1)
            row["estimate_over_peak"] = round((need - FIXED_OVERHEAD) / peak, 3)
            del net
        out[f"k={k}"] = row
    return out
