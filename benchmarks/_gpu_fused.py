"""gpu_check's ``fused`` part: ResNet-20 packs of K members, their speed, memory and FLOP share.

For each K and precision a pack of K masked ResNet-20s (random 90 %, seeds 0..K-1) trains on
CIFAR-10-shaped data with the fused engine (``FusedPack`` + ``train_pack``) under the settings a
run trains under (``deterministic(device, precision)``: strict fp32 has TF32 off). One warm-up
step, then ``steps`` timed steps (no epoch end inside: no evaluation). Reported per K: runs per
hour (a run = 160 epochs of 50,000 images), peak memory, the share of the card's peak FLOP rate
reached, and that over a solo run of the same precision; then the projected GPU-hours of the
ResNet-20 Figure 4 + 5 grid at the best K of each precision.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import Any

import torch
from _common import sync

import earlyprune as ep
from earlyprune.core.device_identity import deterministic
from earlyprune.masks.flops import count_flops
from earlyprune.sweeps.grid import load_sweep
from earlyprune.train.fused import FusedPack, Member
from earlyprune.train.fused_loop import train_pack
from earlyprune.train.optim import Schedule

#: The paper's ResNet-20 CIFAR-10 run: 160 epochs of 50,000 images.
IMAGES_PER_RUN = 160 * 50_000
SWEEPS = Path(__file__).resolve().parent.parent / "examples" / "sweeps"
GRID = ("resnet20_cifar10_fig4.toml", "resnet20_ablations_fig5.toml")

#: Dense peak TFLOP/s by card and precision, from NVIDIA's datasheets (the datasheets print the
#: tensor-core rates "with sparsity", i.e. 2× the dense rate; halved here, since training runs
#: dense products): H100 SXM and PCIe from the "NVIDIA H100 Tensor Core GPU" datasheet
#: (nvidia.com/en-us/data-center/h100: FP32 67 / 51, TF32 989 / 756 sparse, BF16 1,979 / 1,513
#: sparse), H100 NVL from the same sheet (60, 835, 1,671), H200 SXM and NVL from the "NVIDIA
#: H200 Tensor Core GPU" datasheet (nvidia.com/en-us/data-center/h200: as H100 SXM; NVL as
#: H100 NVL), A100 SXM and PCIe from the "NVIDIA A100 Tensor Core GPU" datasheet
#: (nvidia.com/en-us/data-center/a100: FP32 19.5, TF32 156, BF16 312 dense). "fp32" is the
#: CUDA-core rate (strict fp32: TF32 off), "tf32" and "bf16" the tensor-core rates. Cross-checked
#: (issue 22) for H100 SXM against a derivation from SM count and clocks (G. Lockwood's H100
#: notes: FP32 66.9, TF32 494.7, BF16 989.4 dense): within 0.1 %. The other rows are unchecked.
PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "H100 SXM": {"fp32": 67.0, "tf32": 494.5, "bf16": 989.5},
    "H100 PCIe": {"fp32": 51.0, "tf32": 378.0, "bf16": 756.5},
    "H100 NVL": {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5},
    "H200 SXM": {"fp32": 67.0, "tf32": 494.5, "bf16": 989.5},
    "H200 NVL": {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5},
    "A100": {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0},
}


def card(device: torch.device) -> str | None:
    """The ``PEAK_TFLOPS`` row of ``device``'s card, or None (a CPU, an unknown card)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device).upper()
    for family in ("H200", "H100"):
        if family in name:
            if "NVL" in name:
                return f"{family} NVL"
            # cuda names an H100 SXM "NVIDIA H100 80GB HBM3"; the PCIe card says "PCIe"
            return "H100 PCIe" if family == "H100" and "PCIE" in name else f"{family} SXM"
    return "A100" if "A100" in name else None


def train_flops_per_image() -> int:
    """Training FLOPs of one ResNet-20 image: forward MACs × 2 FLOPs × 3 (forward + backward).

    The backward pass costs about twice the forward (gradients of inputs and of weights). Dense
    MACs: the GPU multiplies the masked zeros too.
    """
    macs = count_flops(ep.create_model("resnet20", 10), (3, 32, 32))["dense"]
    return 3 * 2 * macs


def grid_runs() -> int:
    """Distinct runs (by run id) of the ResNet-20 Figure 4 and Figure 5 sweeps together."""
    ids = {s.run_id for f in GRID for s in load_sweep(SWEEPS / f).specs}
    return len(ids)


class PeakMemory:
    """Peak memory of a block: CUDA's allocator peak, or the process's peak RSS on a CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:  # Linux: "5" resets VmHWM, so each K gets its own peak
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass  # then the peak below is the process's peak so far

    def mib(self) -> float:
        if self.device.type == "cuda":
            return round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
        except OSError:
            pass
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def pack_speed(
    device: torch.device, bundle: Any, k: int, precision: str, steps: int, batch: int
) -> float:
    """Images/s (all members together) of a pack of ``k`` ResNet-20s over ``steps`` steps."""
    members = []
    for seed in range(k):
        model = ep.create_model("resnet20", 10, seed=seed).to(device)
        members.append(Member(model, seed, ep.prune(model, "random", 0.9, seed=seed)))
    spe = len(bundle.train) // batch
    if spe <= steps + 1:
        raise ValueError(f"{len(bundle.train)} images give {spe} steps of {batch}: too few")
    sched = Schedule(spe, spe, batch, 0.1, ())  # stops before the epoch end: no evaluation
    with deterministic(device, precision):
        pack = FusedPack(members, sched, precision)
        state = train_pack(pack, bundle, stop_step=1)  # warm-up: kernels, allocator
        sync(device)
        start = time.perf_counter()
        train_pack(pack, bundle, state=state, stop_step=1 + steps)
        sync(device)
    return k * steps * batch / (time.perf_counter() - start)


def solo_speed(device: torch.device, bundle: Any, precision: str, steps: int, batch: int) -> float:
    """Images/s of one solo run (the solo loop, channels-last as a run trains by default)."""
    from earlyprune.train.loop import train

    model = ep.create_model("resnet20", 10, seed=0).to(device)
    mask = ep.prune(model, "random", 0.9, seed=0)
    spe = len(bundle.train) // batch
    sched = Schedule(spe, spe, batch, 0.1, ())
    settings = dict(seed=0, mask=mask, precision=precision, channels_last=True, progress=False)
    with deterministic(device, precision):
        state = train(model, bundle, sched, stop_step=1, **settings)
        sync(device)
        start = time.perf_counter()
        train(model, bundle, sched, state=state, stop_step=1 + steps, **settings)
        sync(device)
    return steps * batch / (time.perf_counter() - start)


def fused_part(
    device: torch.device,
    bundle: Any,
    sizes: tuple[int, ...],
    steps: int,
    batch: int,
    every_k_in_bf16: bool = True,
) -> dict[str, Any]:
    """Every K in ``sizes`` in fp32 and bf16, and the grid's projected GPU-hours (see module).

    Without ``every_k_in_bf16`` (``--quick``), bf16 runs only the best K of fp32.
    """
    flops = train_flops_per_image()
    peaks = PEAK_TFLOPS.get(card(device) or "")
    runs = grid_runs()
    memory = PeakMemory(device)
    out: dict[str, Any] = {"batch": batch, "steps": steps, "card": card(device) or "peak unknown"}
    out["train_gflop_per_image"] = round(flops / 1e9, 4)
    out["pflop_per_run"] = round(flops * IMAGES_PER_RUN / 1e15, 3)
    out["grid_runs"] = runs
    for precision in ("fp32", "bf16"):
        solo = solo_speed(device, bundle, precision, steps, batch)
        rows: dict[str, Any] = {"solo_runs_per_hour": round(3600 * solo / IMAGES_PER_RUN, 4)}
        if precision == "bf16" and not every_k_in_bf16:
            sizes = (int(out["fp32"]["best"][2:]),)
        for k in sizes:
            memory.reset()
            try:
                speed = pack_speed(device, bundle, k, precision, steps, batch)
            except torch.OutOfMemoryError:  # a finding at this K, not a failure of the part
                rows[f"K={k}"] = {"error": "out of memory"}
                continue
            finally:
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            tflops = speed * flops / 1e12
            rows[f"K={k}"] = {
                "images_per_s": round(speed, 1),
                "runs_per_hour": round(3600 * speed / IMAGES_PER_RUN, 4),
                "over_solo": round(speed / solo, 3),
                "peak_memory_mib": memory.mib(),
                "tflop_per_s": round(tflops, 4),
                "of_peak": round(tflops / peaks[precision], 4) if peaks else "peak unknown",
            }
        measured = {k: v for k, v in rows.items() if k.startswith("K=") and "error" not in v}
        if not measured:
            raise RuntimeError(f"no pack size ran in {precision}")
        best = max(measured, key=lambda k: measured[k]["runs_per_hour"])
        rows["best"] = best
        # GPU-hours on a GPU; on a CPU, hours of this machine (a number that only shows the sum)
        rows["grid_device_hours"] = round(runs / measured[best]["runs_per_hour"], 1)
        out[precision] = rows
    out["peak_memory"] = "torch.cuda.max_memory_allocated" if device.type == "cuda" else "RSS"
    return out
