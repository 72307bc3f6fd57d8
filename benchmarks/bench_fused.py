"""Fused training throughput: one pack of K members against the same K runs trained one by one.

smallcnn on the embedded Fashion-MNIST, batch 128, masked members (random 90 %) with their own
seeds. For each K in 1, 2, 4, 8 the two arms alternate (solo first, then fused; ``--reps``
times) and train ``--steps`` steps each (a fraction of an epoch: no evaluation inside). Reported:
runs per hour of each arm, scaled to a run of one epoch of the embedded data, and their ratio
``fused_over_solo`` (median over repetitions of per-repetition ratios; > 1 = fusion wins).

On a CPU fusion is not expected to win (the convolutions are already compute-bound; vmap turns
them into grouped convolutions); the gain is a GPU's, where one small step is launch-bound.

Usage: ``python benchmarks/bench_fused.py [--device cpu|cuda] [--steps N] [--reps R] [--quick|--tiny]``.
"""

from __future__ import annotations

import copy

import torch
from _common import base_parser, context, emit, median, median_ratio, size_of, timed

import earlyprune as ep
from earlyprune.data import load_dataset
from earlyprune.models import create_model
from earlyprune.train.fused import FusedPack, Member
from earlyprune.train.fused_loop import train_pack
from earlyprune.train.loop import train
from earlyprune.train.optim import Schedule

BATCH = 128
PACK_SIZES = (1, 2, 4, 8)


def members(bundle, k: int, device: torch.device) -> list[Member]:
    out = []
    for seed in range(k):
        model = create_model("smallcnn", bundle.num_classes, seed=seed).to(device)
        mask = ep.prune(model, "random", 0.9, seed=seed)
        out.append(Member(model, seed, mask, f"random{seed}"))
    return out


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="steps per arm (default by size)")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default by size)")
    args = parser.parse_args()
    size = size_of(args)
    steps = args.steps or {"full": 30, "quick": 12, "tiny": 3}[size]
    reps = args.reps or {"full": 3, "quick": 2, "tiny": 1}[size]
    device = torch.device(args.device)
    bundle = load_dataset("fashion-mnist-mini")
    spe = bundle.steps_per_epoch(BATCH)
    sched = Schedule(spe, spe, BATCH, 0.1, (), weight_decay=5e-4)
    result: dict = {"benchmark": "fused", "size": size, "steps": steps, "batch_size": BATCH}
    result["run_steps"] = spe  # "a run" below: one epoch of the embedded data
    rows = {}
    warm = members(bundle, 1, device)  # first-call costs (allocator, kernels) in neither arm
    train(warm[0].model, bundle, sched, seed=0, mask=warm[0].mask, stop_step=2, progress=False)
    train_pack(FusedPack(members(bundle, 1, device), sched), bundle, stop_step=2)
    for k in PACK_SIZES:
        base = members(bundle, k, device)
        solo_s, fused_s = [], []
        for _ in range(reps):
            runs = [copy.deepcopy(m) for m in base]

            def solo_all(runs=runs) -> None:
                for m in runs:
                    # As a solo run trains by default (RunSpec.channels_last).
                    train(
                        m.model,
                        bundle,
                        sched,
                        seed=m.seed,
                        mask=m.mask,
                        stop_step=steps,
                        channels_last=True,
                        progress=False,
                    )

            solo_s.append(timed(device, solo_all)[0])
            pack = FusedPack([copy.deepcopy(m) for m in base], sched)
            fused_s.append(
                timed(device, lambda pack=pack: train_pack(pack, bundle, stop_step=steps))[0]
            )
        per_run = spe / steps  # seconds measured per `steps` → seconds per run
        rows[str(k)] = {
            "solo_runs_per_hour": round(3600 * k / (median(solo_s) * per_run), 1),
            "fused_runs_per_hour": round(3600 * k / (median(fused_s) * per_run), 1),
            "fused_over_solo": round(median_ratio(solo_s, fused_s), 3),
        }
        print(f"K={k}: {rows[str(k)]}", flush=True)
    result["packs"] = rows
    result["context"] = context(device)
    emit(result)


if __name__ == "__main__":
    main()
