"""The fused training loop: the solo loop's steps, epochs and curve, for a whole pack at once.

``train_pack`` follows ``train.loop.train`` step for step: the LR of step i is
``sched.lr_at(i)``; member k's batches are ``bundle.train_batches(..., seed=seeds[k], epoch,
start_step)`` (its solo batches); after each full epoch (and at the end) each live member's test
accuracy is appended to its curve with the same fields, and the ``on_epoch`` callbacks run (save
the pack there: :func:`checkpoint_to`). A pack resumed from a checkpoint continues exactly as
the uninterrupted pack, since every batch is a pure function of (seed, epoch, batch index).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from earlyprune.train.fused import FusedPack, PackCallback, PackState
from earlyprune.train.fused_state import load_pack_file, save_atomic
from earlyprune.train.optim import Schedule

__all__ = ["checkpoint_to", "resume_from", "train_pack"]


def train_pack(
    pack: FusedPack,
    bundle: Any,
    *,
    state: PackState | None = None,
    stop_step: int | None = None,
    on_step: Sequence[PackCallback] = (),
    on_epoch: Sequence[PackCallback] = (),
) -> PackState:
    """Trains every member of ``pack`` from ``state.step`` up to ``stop_step`` (default: the end).

    Args:
        pack: The stacked members (their seeds are their data-order seeds).
        bundle: A ``DataBundle`` shared by all members.
        state: Where to continue from (default: step 0; see :func:`resume_from`).
        stop_step: Stop after this many total steps.
        on_step: Callbacks after every optimizer step (``step`` = steps done).
        on_epoch: Callbacks after each epoch's evaluation.

    Returns:
        The pack's state; ``state.member(k)`` is member k's ``TrainState`` (``diverged`` set for
        a member whose loss became NaN or infinite: it stopped there, the others went on).
    """
    sched: Schedule = pack.sched
    state = state or PackState.fresh(pack.k)
    end = sched.total_steps if stop_step is None else min(stop_step, sched.total_steps)
    spe = sched.steps_per_epoch
    pack.base.train()
    while state.step < end and _any_live(state):
        epoch, start = divmod(state.step, spe)
        stop_in_epoch = min(spe, end - epoch * spe)
        streams = [
            bundle.train_batches(
                sched.batch_size, seed=s, epoch=epoch, device=pack.device, start_step=start
            )
            for s in pack.seeds
        ]
        loss_sum, n_loss = [0.0] * pack.k, [0] * pack.k
        for _ in range(start, stop_in_epoch):
            batches = [next(it) for it in streams]
            xs = torch.stack([x for x, _ in batches])
            ys = torch.stack([y for _, y in batches])
            live = [d is None for d in state.diverged_at]
            values = pack.step(xs, ys, sched.lr_at(state.step), state.step, state)
            for k, v in enumerate(values):
                if live[k] and math.isfinite(v):
                    loss_sum[k], n_loss[k] = loss_sum[k] + v, n_loss[k] + 1
            state.step += 1
            for cb in on_step:
                cb(state.step, pack, state)
            if not _any_live(state):
                return state
        if state.step % spe == 0 or state.step == sched.total_steps:
            _epoch_end(pack, bundle, state, loss_sum, n_loss)
            for cb in on_epoch:
                cb(state.step, pack, state)
    return state


def _any_live(state: PackState) -> bool:
    return any(d is None for d in state.diverged_at)


def _epoch_end(
    pack: FusedPack, bundle: Any, state: PackState, loss_sum: list[float], n_loss: list[int]
) -> None:
    sched = pack.sched
    spe = sched.steps_per_epoch
    batches = bundle.test_batches(max(sched.batch_size, 256), device=pack.device)
    results = pack.evaluate(batches)
    for k, (acc, test_loss) in enumerate(results):
        if state.diverged_at[k] is not None:
            continue  # its solo run stopped at the diverging step and evaluated no more
        state.curves[k].append(
            {
                "epoch": math.ceil(state.step / spe),
                "step": state.step,
                "lr": sched.lr_at(state.step - 1),
                "train_loss": loss_sum[k] / max(n_loss[k], 1),
                "test_loss": test_loss,
                "test_accuracy": acc,
            }
        )


def checkpoint_to(path: str | Path) -> PackCallback:
    """An ``on_epoch`` callback that saves the pack to ``path`` atomically after every epoch."""
    target = Path(path)

    def save(_step: int, pack: FusedPack, state: PackState) -> None:
        save_atomic(target, pack.checkpoint(state))

    return save


def resume_from(pack: FusedPack, path: str | Path) -> PackState | None:
    """Loads ``path`` into ``pack`` and returns its state; None (pack untouched) if absent."""
    found = load_pack_file(Path(path))
    return None if found is None else pack.restore(found)
