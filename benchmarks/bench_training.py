"""Training throughput: masked vs dense, and our default configuration vs a plain PyTorch loop.

ResNet-20, batch 128, CIFAR-shaped synthetic data with the paper's augmentation. Four arms run
interleaved (rotating order) on copies of one initialization, each keeping its own optimizer
state from block to block:

* ``naive``: a hand-written fp32 loop (contiguous tensors, no autocast) over the same batches;
* ``ours``: ``earlyprune.train.loop.train`` with the ``RunSpec`` defaults (channels_last, fp32);
* ``ours_bf16``: the same with ``precision="bf16"`` (opt-in);
* ``masked``: ``ours`` with a 90 %-sparse random mask (gradient masking + re-masking each step);
* ``rigl``: ``masked`` with RigL's mask update (drop by |w|, regrow by the dense |grad|) in the
  first step of every block, i.e. every ``steps`` steps instead of every 100.

RigL vs static is compared on *mean* block time (the update step is the one that costs, so a
median would hide it): ``rigl_over_static_measured`` at one update per block, and
``rigl_over_static`` projected to ΔT = 100 from the measured extra seconds per update.

A block's throughput is the batch size over its median step time (step = batch generation,
forward, backward, optimizer step, masking); the reported ratios are medians over repetitions of
the per-repetition ratios. Targets: masked/dense ≥ 0.98, defaults/naive ≥ 1.25, RigL/static
≥ 0.95 at ΔT = 100.

Usage: ``python benchmarks/bench_training.py [--device cpu|cuda] [--quick|--tiny]``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from _common import (
    base_parser,
    interleaved,
    measure_and_emit,
    median,
    median_ratio,
    rate,
    sync,
    synthetic_cifar,
)
from torch import Tensor, nn

import earlyprune as ep
from earlyprune.methods.sparse_training import SPARSE_TRAINERS, MaskUpdater, UpdateSchedule
from earlyprune.run.spec import RunSpec
from earlyprune.train.loop import Schedule, TrainState, make_optimizer, train

#: size → (batch, steps per block, repetitions, warm-up steps)
SIZES = {"full": (128, 6, 7, 3), "quick": (128, 4, 3, 2), "tiny": (4, 2, 1, 0)}
SPARSITY = 0.9


def _schedule(bundle: Any, batch: int) -> Schedule:
    # The paper's ResNet-20 optimizer; a schedule long enough never to end or drop the LR.
    return Schedule(
        total_steps=10**9,
        steps_per_epoch=bundle.steps_per_epoch(batch),
        batch_size=batch,
        lr=0.1,
        milestones=(),
        momentum=0.9,
        weight_decay=1e-4,
    )


class OurArm:
    """Blocks of steps of the real training loop, continued from block to block."""

    def __init__(
        self,
        model: nn.Module,
        bundle: Any,
        sched: Schedule,
        device: torch.device,
        precision: str,
        channels_last: bool,
        mask: dict[str, Tensor] | None,
        rigl_every: int | None = None,
    ) -> None:
        self.model, self.bundle, self.sched, self.device = model, bundle, sched, device
        self.precision, self.channels_last = precision, channels_last
        self.mask = None if mask is None else {n: m.clone() for n, m in mask.items()}
        self.optimizer = make_optimizer(model, sched)
        self.state = TrainState()
        self.hooks: list[MaskUpdater] = []
        if rigl_every is not None and self.mask is not None:  # α stays 0.3: no decay to 0
            schedule = UpdateSchedule(start=0, end=10**9, interval=rigl_every)
            self.hooks = [MaskUpdater(SPARSE_TRAINERS.get("rigl"), self.mask, schedule, 0)]
        self.seconds = 0.0  # wall time of the blocks so far (mean-based rates)

    def block(self, steps: int) -> float:
        """Runs ``steps`` steps; returns images/s from the median step time."""
        stamps: list[float] = []

        def stamp(*_: object) -> None:
            sync(self.device)
            stamps.append(time.perf_counter())

        sync(self.device)
        stamps.append(time.perf_counter())
        train(
            self.model,
            self.bundle,
            self.sched,
            seed=0,
            state=self.state,
            optimizer=self.optimizer,
            mask=self.mask,
            stop_step=self.state.step + steps,
            precision=self.precision,
            channels_last=self.channels_last,
            on_step=[stamp],
            on_grad=self.hooks,
            progress=False,
        )
        if self.state.diverged:
            raise RuntimeError("training diverged during the benchmark")
        self.last_block_s = stamps[-1] - stamps[0]
        return rate(self.sched.batch_size, stamps)

    def mean_block(self, steps: int) -> float:
        """Runs ``steps`` steps; returns images/s from the block's total time (mean step)."""
        self.block(steps)
        return self.sched.batch_size * steps / self.last_block_s


class NaiveArm:
    """A plain PyTorch loop: fp32, contiguous memory format, no autocast, no masking."""

    def __init__(self, model: nn.Module, bundle: Any, sched: Schedule, device: torch.device):
        self.model, self.bundle, self.sched, self.device = model, bundle, sched, device
        self.optimizer = torch.optim.SGD(
            model.parameters(), lr=sched.lr, momentum=0.9, weight_decay=1e-4
        )
        self.batches = self._forever()

    def _forever(self) -> Iterator[tuple[Tensor, Tensor]]:
        epoch = 0
        while True:
            yield from self.bundle.train_batches(
                self.sched.batch_size, seed=0, epoch=epoch, device=self.device
            )
            epoch += 1

    def block(self, steps: int) -> float:
        self.model.train()
        stamps = []
        sync(self.device)
        stamps.append(time.perf_counter())
        for _ in range(steps):
            x, y = next(self.batches)
            loss = F.cross_entropy(self.model(x), y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            sync(self.device)
            stamps.append(time.perf_counter())
        return rate(self.sched.batch_size, stamps)


def measure(device: torch.device, size: str) -> dict[str, Any]:
    batch, steps, reps, warmup = SIZES[size]
    defaults = RunSpec()
    bundle = synthetic_cifar(n_train=batch * 40)
    sched = _schedule(bundle, batch)
    base = ep.create_model("resnet20", 10, seed=0).to(device)
    mask = ep.prune(base, "random", SPARSITY, seed=0)

    def ours(precision: str, masked: bool, rigl_every: int | None = None) -> OurArm:
        return OurArm(
            copy.deepcopy(base),
            bundle,
            sched,
            device,
            precision,
            defaults.channels_last,
            mask if masked else None,
            rigl_every,
        )

    arms_obj: dict[str, Any] = {
        "naive": NaiveArm(copy.deepcopy(base), bundle, sched, device),
        "ours": ours(defaults.precision, False),
        "ours_bf16": ours("bf16", False),
        "masked": ours(defaults.precision, True),
        "static_mean": ours(defaults.precision, True),
        "rigl_mean": ours(defaults.precision, True, rigl_every=steps),
    }
    for arm in arms_obj.values():  # allocator, kernels and caches warm up outside the timing
        arm.block(warmup + 1)
    arms: dict[str, Callable[[], float]] = {
        # Any `steps` consecutive steps hold exactly one multiple of `steps`: one update a block.
        name: (lambda a=arm, n=name: a.mean_block(steps) if n.endswith("_mean") else a.block(steps))
        for name, arm in arms_obj.items()
    }
    ips = interleaved(arms, reps)
    rigl = _rigl_projection(ips["rigl_mean"], ips["static_mean"], batch, steps)
    return {
        "benchmark": "training",
        "model": "resnet20",
        "batch_size": batch,
        "steps_per_block": steps,
        "repetitions": reps,
        "ours_config": {"channels_last": defaults.channels_last, "precision": defaults.precision},
        "sparsity": SPARSITY,
        "images_per_s": {k: round(median(v), 1) for k, v in ips.items()},
        "masked_over_dense": round(median_ratio(ips["masked"], ips["ours"]), 3),
        "defaults_over_naive": round(median_ratio(ips["ours"], ips["naive"]), 3),
        "bf16_over_naive": round(median_ratio(ips["ours_bf16"], ips["naive"]), 3),
        **rigl,
        "ratio_spread": {
            "masked_over_dense": _spread(ips["masked"], ips["ours"]),
            "defaults_over_naive": _spread(ips["ours"], ips["naive"]),
        },
    }


def _rigl_projection(
    rigl: list[float], static: list[float], batch: int, steps: int, interval: int = 100
) -> dict[str, Any]:
    """RigL/static throughput at one update per ``steps`` (measured) and per ``interval``.

    The projection adds the measured extra seconds of one update (median over repetitions of
    block-time differences) to ``interval`` static steps.
    """
    extra = [steps * batch * (1 / r - 1 / s) for r, s in zip(rigl, static, strict=True)]
    step_s = median([batch / s for s in static])
    per_update = median(extra)
    return {
        "rigl_update_extra_s": round(per_update, 4),
        "rigl_over_static_measured": round(median_ratio(rigl, static), 3),
        "rigl_measured_every": steps,
        "rigl_over_static": round(interval * step_s / (interval * step_s + per_update), 4),
    }


def _spread(num: list[float], den: list[float]) -> list[float]:
    """Lowest and highest per-repetition ratio: how noisy the median is."""
    ratios = [a / b for a, b in zip(num, den, strict=True)]
    return [round(min(ratios), 3), round(max(ratios), 3)]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = base_parser(__doc__.splitlines()[0]).parse_args(argv)
    return measure_and_emit(measure, args)


if __name__ == "__main__":
    main()
