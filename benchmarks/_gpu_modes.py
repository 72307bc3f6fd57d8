"""gpu_check's ``modes`` part: training steps through earlyprune's loop plain, with ``--compile``
and (CUDA only) with ``--autotune`` and both, in images/s measured in one run.

Each variant is one ``train`` call on a fresh network (90 % magnitude mask, channels-last as a
run's default configuration): ``warm`` steps first (torch.compile builds its kernels there,
cuDNN times its algorithms), then ``steps`` timed ones. ResNet-20 everywhere but on a CPU with
``--quick``, where compiling it takes ~40 s on two cores: the demo's smallcnn at CIFAR shape
there (~17 s), which checks the wiring rather than the speed.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from _common import sync

import earlyprune as ep
from earlyprune.train.loop import train
from earlyprune.train.modes import Modes
from earlyprune.train.optim import Schedule


def timed_train(
    device: torch.device,
    bundle: Any,
    network: str,
    modes: Modes,
    warm: int,
    steps: int,
    batch: int,
) -> tuple[float, float]:
    """(images/s of the timed steps, seconds of the warm-up steps) of one ``train`` call."""
    model = ep.create_model(network, 10, input_shape=(3, 32, 32), seed=0).to(device)
    mask = ep.prune(model, "magnitude", 0.9)
    sched = Schedule(10**6, -(-len(bundle.train) // batch), batch, 0.1, ())  # no epoch's end
    stamps: dict[int, float] = {}

    def stamp(step: int, *_: Any) -> None:
        if step in (warm, warm + steps):
            sync(device)
            stamps[step] = time.perf_counter()

    start = time.perf_counter()
    train(
        model,
        bundle,
        sched,
        seed=0,
        mask=mask,
        channels_last=True,
        stop_step=warm + steps,
        on_step=[stamp],
        sync_at={warm, warm + steps}.__contains__,  # the loss is read only where it is timed
        progress=False,
        modes=modes,
    )
    return steps * batch / (stamps[warm + steps] - stamps[warm]), stamps[warm] - start


def modes_part(device: torch.device, bundle: Any, quick: bool) -> dict[str, Any]:
    """images/s of each mode against the plain loop, and the warm-up seconds compile adds."""
    network = "smallcnn" if quick and device.type == "cpu" else "resnet20"
    warm, steps, batch = (3, 3, 16) if quick else (20, 100, 128)
    variants = {"plain": Modes(), "compile": Modes(compile=True)}
    if device.type == "cuda":
        variants |= {"autotune": Modes(autotune=True), "compile_autotune": Modes(True, True)}
    out: dict[str, Any] = {"network": network, "batch": batch, "timed_steps": steps}
    for name, modes in variants.items():
        speed, warm_s = timed_train(device, bundle, network, modes, warm, steps, batch)
        out[name] = {"images_per_s": round(speed, 1), "warm_up_s": round(warm_s, 2)}
        if name != "plain":
            out[name]["of_plain"] = round(speed / out["plain"]["images_per_s"], 3)
    if device.type != "cuda":
        out["autotune"] = {"skipped": "needs CUDA"}
    return out
