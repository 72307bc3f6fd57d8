"""One script that runs every device path once and says how fast and whether it is exact.

On a GPU (the default when CUDA is available) it is meant to run within 8 minutes on one H100;
``--device cpu --quick`` runs the same checks anywhere in a few minutes. Parts, each reported with
``ok`` or the error it raised (one failing part does not hide the others):

* training: ResNet-20 on CIFAR-10-shaped data through earlyprune's loop in fp32, bf16 and
  channels-last, fed by the host path and by the device-resident path, in images/s against a
  minimal hand-written PyTorch loop on the same device (tensors already there);
* resident data: every batch of an epoch equal to the host path's;
* scoring: every registered method through ``ep.prune`` (GraSP's double backward, float64
  SynFlow, ProsPr's unrolled graph, ...), plus micro-batched SNIP, GraSP and ProsPr;
* selection: both k-th value kernels, equal thresholds, and their time;
* kill and resume: training stopped half-way, saved, loaded into fresh objects and continued
  equals uninterrupted training bit for bit (under the deterministic settings);
* workers: ``--workers`` processes training at once; their summed images/s gives ResNet-20
  CIFAR-10 runs per hour (160 epochs of 50,000 images, the paper's preset);
* fused: packs of K = 1, 4, 16, 64 ResNet-20s (quick: 1, 2, 4) through the fused engine in fp32
  and bf16: runs per hour against a solo run, peak memory, the share of the card's peak FLOP
  rate reached ("peak unknown" on a CPU or an unknown card) and the projected GPU-hours of the
  ResNet-20 Figure 4 + 5 grid at the best K (see ``_gpu_fused.py``);
* accumulate: ``--accumulate 2`` equals whole batches on LeNet-300-100, and the up-front memory
  estimate against ``max_memory_allocated`` for ResNet-20 at batch 128 (``_gpu_accumulate.py``);
* modes: training steps with ``--compile`` and (CUDA) ``--autotune`` against the plain loop, in
  images/s, and the warm-up seconds compiling costs (see ``_gpu_modes.py``);
* identity: the device kind a spec made here records, a CPU-planned run staying on the CPU, and
  bit-identical repeated fp32 gradients of ResNet-20, VGG-16 and ResNet-50 under a run's
  settings (no operation without a deterministic kernel; ``_gpu_identity.py``);
* structure: inference speed of nm:2:4 (semi-structured sparse kernels, CUDA only), channel and
  unstructured masks at 0.5 and 0.9 against the dense masked network (``measure_speed``).

Usage: ``python benchmarks/gpu_check.py [--device cpu|cuda] [--quick] [--workers N]
[--only PART ...]``.
Prints a table to stderr and one JSON object on stdout (``ok``: every part passed).
"""

from __future__ import annotations

import io
import multiprocessing as mp
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from _common import context, emit, sync, synthetic_cifar
from _gpu_accumulate import accumulate_part
from _gpu_fused import fused_part
from _gpu_identity import identity_part
from _gpu_modes import modes_part

import earlyprune as ep
from earlyprune.apps.speed import magnitude_mask, measure_speed
from earlyprune.core.device_identity import deterministic, device_kind
from earlyprune.data.device import DeviceBundle
from earlyprune.masks.kernels import kth_smallest
from earlyprune.methods.micro_batch import micro_batched
from earlyprune.methods.scoring import METHODS
from earlyprune.run.presets import PRESETS
from earlyprune.train.loop import TrainState, train
from earlyprune.train.optim import Schedule

#: The paper's ResNet-20 CIFAR-10 run: 160 epochs of 50,000 images (runs/hour from images/s).
IMAGES_PER_RUN = 160 * 50_000


PARTS = (
    "training",
    "resident_data",
    "scoring",
    "selection",
    "kill_and_resume",
    "workers",
    "fused",
    "modes",
    "structure",
    "accumulate",
    "identity",
)


def schedule(steps: int, batch: int, n: int) -> Schedule:
    return Schedule(steps, -(-n // batch), batch, 0.1, (steps // 2,))


def minimal_loop(device: torch.device, steps: int, batch: int) -> float:
    """images/s of a bare SGD loop over batches already on the device: the floor to compare to."""
    model = ep.create_model("resnet20", 10, seed=0).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    for i in range(steps + 1):
        if i == 1:  # the first step warms up kernels and allocators
            sync(device)
            start = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(device)
    return steps * batch / (time.perf_counter() - start)


def loop_speed(
    device: torch.device,
    bundle: Any,
    steps: int,
    precision: str,
    channels_last: bool,
    batch: int = 128,
) -> float:
    """images/s of earlyprune's own loop (masked at 90 %, evaluation excluded)."""
    model = ep.create_model("resnet20", 10, seed=0).to(device)
    mask = ep.prune(model, "magnitude", 0.9)
    sched = schedule(10**6, batch, len(bundle.train))  # no epoch end: no evaluation inside
    kwargs = dict(seed=0, mask=mask, precision=precision, channels_last=channels_last)
    state = train(model, bundle, sched, stop_step=1, progress=False, **kwargs)  # warm-up
    sync(device)
    start = time.perf_counter()
    train(model, bundle, sched, state=state, stop_step=1 + steps, progress=False, **kwargs)
    sync(device)
    return steps * batch / (time.perf_counter() - start)


def check_resident(bundle: Any, resident: Any, device: torch.device) -> dict[str, Any]:
    pairs = zip(
        resident.train_batches(128, seed=1, epoch=2, device=device),
        bundle.train_batches(128, seed=1, epoch=2, device=device),
        strict=True,
    )
    same = all(torch.equal(a, c) and torch.equal(b, d) for (a, b), (c, d) in pairs)
    if not same:
        raise AssertionError("device-resident batches differ from the host path")
    return {"equal_batches": True}


def scorers(device: torch.device, quick: bool) -> dict[str, Any]:
    """Seconds of ``ep.prune`` to 90 % with every registered method (quick: 2 rounds at most,
    10 examples instead of 100, micro-batched SNIP only)."""
    model = ep.create_model("resnet20", 10, seed=0).to(device)
    gen = torch.Generator().manual_seed(0)
    n = 10 if quick else 100
    batch = (
        torch.randn(n, 3, 32, 32, generator=gen).to(device),
        torch.arange(n).to(device) % 10,
    )
    out: dict[str, Any] = {}
    methods: list[Any] = list(METHODS.names())
    micro = ("snip",) if quick else ("snip", "grasp", "prospr")
    methods += [micro_batched(m, n // 4) for m in micro]
    for method in methods:
        name = method if isinstance(method, str) else f"{method.name}@micro{n // 4}"
        m = METHODS.get(method) if isinstance(method, str) else method
        rounds = min(m.rounds, 2) if quick else None
        start = time.perf_counter()
        # Under a run's fp32 settings, as runs score: an op without a deterministic CUDA
        # kernel raises here instead of in every run.
        with deterministic(device):
            mask = ep.prune(model, method, 0.9, batch=batch, rounds=rounds)
        sync(device)
        kept = sum(int(v.sum()) for v in mask.values()) / sum(v.numel() for v in mask.values())
        out[name] = {"seconds": round(time.perf_counter() - start, 3), "density": round(kept, 4)}
    return out


def selection(device: torch.device, quick: bool) -> dict[str, Any]:
    n = 1_000_000 if quick else 15_000_000  # VGG-16 has 14.7 M prunable weights
    values = torch.randn(n, generator=torch.Generator().manual_seed(0)).to(device)
    out: dict[str, Any] = {}
    found = []
    for kernel in ("kthvalue", "sort"):
        kth_smallest(values, n // 10, kernel)  # warm-up
        sync(device)
        start = time.perf_counter()
        found.append(kth_smallest(values, n // 10, kernel))
        sync(device)
        out[f"{kernel}_ms"] = round(1000 * (time.perf_counter() - start), 2)
    if not bool(found[0] == found[1]):
        raise AssertionError("the two selection kernels disagree")
    return out


def kill_and_resume(device: torch.device, bundle: Any, steps: int) -> dict[str, Any]:
    """Half the steps, a checkpoint through bytes, fresh objects, the rest: equal bits?"""
    sched = schedule(steps, 64, len(bundle.train))

    def fresh() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        model = ep.create_model("resnet20", 10, seed=3).to(device)
        return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    with deterministic(device):
        whole, opt = fresh()
        train(whole, bundle, sched, seed=5, optimizer=opt, progress=False)
        first, opt = fresh()
        state = train(
            first, bundle, sched, seed=5, optimizer=opt, stop_step=steps // 2, progress=False
        )
        buffer = io.BytesIO()
        torch.save({"model": first.state_dict(), "opt": opt.state_dict()}, buffer)
        buffer.seek(0)
        saved = torch.load(buffer, weights_only=True)
        second, opt2 = fresh()
        second.load_state_dict(saved["model"])
        opt2.load_state_dict(saved["opt"])
        resumed = TrainState(step=state.step, curve=list(state.curve))
        train(second, bundle, sched, seed=5, optimizer=opt2, state=resumed, progress=False)
    a, b = whole.state_dict(), second.state_dict()
    if not all(torch.equal(a[k], b[k]) for k in a):
        raise AssertionError("resumed training differs from uninterrupted training")
    return {"bit_identical": True, "steps": steps}


def _worker(device: str, steps: int, batch: int, queue: Any) -> None:
    torch.set_num_threads(1)
    bundle = synthetic_cifar(steps * batch, 100)
    speed = loop_speed(torch.device(device), bundle, steps, "fp32", False, batch)
    queue.put(speed)


def workers(device: torch.device, n: int, steps: int, batch: int = 128) -> dict[str, Any]:
    """Summed images/s of ``n`` processes training at once, and ResNet-20 runs per hour."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(str(device), steps, batch, queue)) for _ in range(n)]
    for p in procs:
        p.start()
    speeds = [queue.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    total = sum(speeds)
    return {
        "workers": n,
        "images_per_s": round(total, 1),
        "runs_per_hour": round(3600 * total / IMAGES_PER_RUN, 3),
    }


def structure_part(device: torch.device, quick: bool) -> dict[str, Any]:
    """Inference speed of ResNet-20 dense-masked vs each structure's kernel (``measure_speed``).

    nm:2:4 (semi-structured sparse tensor cores) needs CUDA; channel (the shrunk network) and
    unstructured (CSR) at 0.5 and 0.9.
    """
    batch, repeats = (8, 2) if quick else (128, 20)
    out: dict[str, Any] = {"batch": batch, "repeats": repeats}
    cases = [("nm:2:4", None)] + [(s, p) for s in ("channel", "unstructured") for p in (0.5, 0.9)]
    for structure, sparsity in cases:
        key = structure if sparsity is None else f"{structure}@{sparsity}"
        if structure.startswith("nm") and device.type != "cuda":
            out[key] = {"skipped": "needs CUDA"}
            continue
        model = ep.create_model("resnet20", 10, seed=0)
        mask = magnitude_mask(model, structure, 0.5 if sparsity is None else sparsity)
        r = measure_speed(model, mask, structure, (3, 32, 32), device, batch, repeats)
        row = {"sparsity": round(r["sparsity"], 4), "dense_ms": round(r["dense_ms"], 3)}
        if r["skipped"] is not None:
            row["skipped"] = r["skipped"]
        else:
            row |= {"kernel": r["kernel"], "kernel_ms": round(r["sparse_ms"], 3)}
            row |= {"speedup": round(r["speedup"], 3), "outputs_equal": r["outputs_equal"]}
            if not r["outputs_equal"]:
                raise AssertionError(f"{key}: the kernel's outputs differ by {r['max_abs_diff']}")
        out[key] = row
    return out


def part(results: dict[str, Any], name: str, fn: Callable[[], Any]) -> None:
    """Runs one part, recording its result or its error (the other parts still run)."""
    print(f"gpu_check: {name} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    try:
        results[name] = {"ok": True, **fn(), "wall_s": round(time.perf_counter() - start, 1)}
    except Exception as exc:  # a report of every part, whatever fails
        line = traceback.format_exception_only(type(exc), exc)[-1].strip()
        results[name] = {"ok": False, "error": line}


def training_part(
    device: torch.device, bundle: Any, resident: Any, steps: int, batch: int
) -> dict[str, Any]:
    floor = minimal_loop(device, steps, batch)
    out: dict[str, Any] = {"batch": batch, "minimal_loop_images_per_s": round(floor, 1)}
    variants = [("fp32", False, bundle, "host"), ("fp32", False, resident, "resident")]
    variants += [("bf16", False, resident, "resident"), ("fp32", True, resident, "resident")]
    for precision, cl, source, path in variants:
        key = f"{precision}{'_channels_last' if cl else ''}_{path}"
        speed = loop_speed(device, source, steps, precision, cl, batch)
        out[key] = {
            "images_per_s": round(speed, 1),
            "of_minimal": round(speed / out["minimal_loop_images_per_s"], 3),
        }
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import argparse

    default = "cuda" if torch.cuda.is_available() else "cpu"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=default, help=f"cpu or cuda[:N] (default: {default})")
    parser.add_argument("--quick", action="store_true", help="fewer steps: a few minutes on a CPU")
    parser.add_argument("--workers", type=int, default=None, help="processes at once (default 2/4)")
    parser.add_argument("--only", nargs="+", choices=PARTS, help="run only these parts")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    quick = args.quick
    steps = 1 if quick else 200
    batch = 16 if quick else 128  # quick: proves the paths run; the numbers mean little
    n_workers = args.workers or (2 if quick else 4)
    bundle = synthetic_cifar(4096 if not quick else 512, 256)
    resident = DeviceBundle(bundle, device)
    results: dict[str, Any] = {"benchmark": "gpu_check", "device_kind": device_kind(device)}
    parts: dict[str, Callable[[], dict[str, Any]]] = {
        "training": lambda: training_part(device, bundle, resident, steps, batch),
        "resident_data": lambda: check_resident(bundle, resident, device),
        "scoring": lambda: scorers(device, quick),
        "selection": lambda: selection(device, quick),
        "kill_and_resume": lambda: kill_and_resume(device, resident, 4 if quick else 60),
        "workers": lambda: workers(device, n_workers, 2 if quick else 100, batch),
        # quick: K = 1, 2, 4 at batch 8 (CPU-sized), bf16 at the best K only; full: the
        # resnet20_cifar10 preset's batch 128, K up to 64, both precisions at every K
        "fused": lambda: fused_part(
            device,
            resident if not quick else DeviceBundle(synthetic_cifar(64, 16), device),
            (1, 2, 4) if quick else (1, 4, 16, 64),
            2 if quick else 20,
            8 if quick else PRESETS.get("resnet20_cifar10").batch_size,
            every_k_in_bf16=not quick,
        ),
        "modes": lambda: modes_part(device, resident, quick),
        "structure": lambda: structure_part(device, quick),
        "accumulate": lambda: accumulate_part(device, bundle, 2 if quick else 20, batch),
        "identity": lambda: identity_part(device),
    }
    for name, fn in parts.items():
        if not args.only or name in args.only:
            part(results, name, fn)
    results["ok"] = all(v.get("ok") for v in results.values() if isinstance(v, dict))
    results.update(context(device))
    results["size"] = "quick" if quick else "full"
    for name, value in results.items():
        if isinstance(value, dict) and "ok" in value:
            print(
                f"  {name:16s} {'ok' if value['ok'] else 'FAILED: ' + value['error']}",
                file=sys.stderr,
            )
    emit(results)
    return results


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
