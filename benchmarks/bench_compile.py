"""Speed of a training step through ``torch.compile`` (``--compile``) against eager, in one run.

Each repetition trains a fresh masked network (90 % magnitude, channels-last) through
earlyprune's loop twice, eager and compiled, in alternating order (``_gpu_modes.timed_train``):
warm-up steps first (the compiled arm builds its kernels there: ``compile_warm_up_s``), then
timed steps. Reports images/s of each arm and the median per-repetition ratio
``compiled_over_eager`` (> 1: compiled is faster). As the load of a shared machine drifts
between repetitions, ``step_compiled_over_eager`` also times bare SGD steps (forward, loss,
backward, update) of an eager and a compiled network in alternating blocks of a few steps, in one
process: the median per-block ratio. ResNet-20 at batch 128 on CIFAR-shaped
random data; ``--tiny`` uses smallcnn at batch 16 (seconds: a smoke test, no meaning).

Usage: ``python benchmarks/bench_compile.py [--device cpu|cuda] [--quick|--tiny]``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from _common import base_parser, interleaved, measure_and_emit, median, synthetic_cifar, timed
from _gpu_modes import timed_train

import earlyprune as ep
from earlyprune.train.modes import Modes, compiled

#: size → blocks of alternating bare steps, steps per block
BLOCKS: dict[str, tuple[int, int]] = {"full": (20, 5), "quick": (8, 5), "tiny": (2, 1)}
#: size → (network, batch, warm-up steps, timed steps, repetitions)
SIZES: dict[str, tuple[str, int, int, int, int]] = {
    "full": ("resnet20", 128, 5, 40, 5),
    "quick": ("resnet20", 128, 5, 15, 2),
    "tiny": ("smallcnn", 16, 2, 2, 1),
}


def alternating_steps(
    device: torch.device, network: str, batch: int, blocks: int, block: int
) -> dict[str, Any]:
    """Median per-block ratio of eager to compiled seconds of bare SGD steps, alternating."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, 32, 32, generator=gen).to(device)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), generator=gen).to(device)
    arms = {}
    for name in ("eager", "compiled"):
        model = ep.create_model(network, 10, input_shape=(3, 32, 32), seed=0).to(device)
        model.to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        arms[name] = (compiled(model, Modes(compile=name == "compiled")), opt)

    def steps(name: str) -> None:
        net, opt = arms[name]
        for _ in range(block):
            loss = F.cross_entropy(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    for name in arms:  # warm-up: the compiled arm builds its kernels here
        steps(name)
    seconds: dict[str, list[float]] = {"eager": [], "compiled": []}
    for b in range(blocks):
        for name in ("eager", "compiled") if b % 2 == 0 else ("compiled", "eager"):
            seconds[name].append(timed(device, lambda name=name: steps(name))[0])
    ratios = [e / c for e, c in zip(seconds["eager"], seconds["compiled"], strict=True)]
    return {
        "step_blocks": f"{blocks} × {block} steps",
        "step_images_per_s": {n: round(batch * block / median(v), 1) for n, v in seconds.items()},
        "step_compiled_over_eager": round(median(ratios), 3),
    }


def measure(device: torch.device, size: str) -> dict[str, Any]:
    network, batch, warm, steps, reps = SIZES[size]
    bundle = synthetic_cifar(batch * (warm + steps), 16)
    warm_up: dict[str, list[float]] = {"eager": [], "compiled": []}

    def arm(name: str, modes: Modes) -> float:
        speed, seconds = timed_train(device, bundle, network, modes, warm, steps, batch)
        warm_up[name].append(seconds)
        return speed

    speeds = interleaved(
        {"eager": lambda: arm("eager", Modes()), "compiled": lambda: arm("compiled", Modes(True))},
        reps,
    )
    ratios = [c / e for c, e in zip(speeds["compiled"], speeds["eager"], strict=True)]
    return {
        "benchmark": "compile",
        "network": network,
        "batch": batch,
        "timed_steps": steps,
        "repetitions": reps,
        "eager_images_per_s": round(median(speeds["eager"]), 1),
        "compiled_images_per_s": round(median(speeds["compiled"]), 1),
        "compiled_over_eager": round(median(ratios), 3),
        "compile_warm_up_s": round(median(warm_up["compiled"]) - median(warm_up["eager"]), 1),
        "images_per_s": {n: [round(v, 1) for v in vs] for n, vs in speeds.items()},
        "warm_up_s": {n: [round(v, 1) for v in vs] for n, vs in warm_up.items()},
        **alternating_steps(device, network, batch, *BLOCKS[size]),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = base_parser(__doc__.splitlines()[0]).parse_args(argv)
    return measure_and_emit(measure, args)


if __name__ == "__main__":
    main()
