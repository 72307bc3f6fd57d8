"""The training loop: the schedule's optimizer and LR rule, masked training, evaluation, callbacks.

The loop is closed; stages extend it through callbacks (``on_epoch``, ``on_step``). Masked
training keeps pruned weights exactly zero with ``keep_pruned``: after every optimizer step the
pruned weights and their optimizer state (momentum, Adam's moments) are multiplied by the mask,
so neither momentum nor weight decay revives them. No forward hooks, so ``state_dict`` keys
stay those of the plain model. ``Schedule`` and ``make_optimizer`` live in ``earlyprune.train.optim``.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from earlyprune.data.device import on_device
from earlyprune.masks.keep import keep_pruned
from earlyprune.train.accumulate import accumulated_backward
from earlyprune.train.evaluate import autocast, epoch_point, evaluate
from earlyprune.train.modes import Modes, compiled, numerics
from earlyprune.train.optim import Schedule, make_optimizer
from earlyprune.train.rewind import SafePoint
from earlyprune.train.watch import LossWatch

__all__ = ["Schedule", "StepCallback", "TrainState", "evaluate", "make_optimizer", "train"]

if TYPE_CHECKING:
    from earlyprune.train.distributed import Distributed


@dataclass
class TrainState:
    """What a checkpoint holds: enough to continue bit-identically."""

    step: int = 0
    curve: list[dict[str, Any]] = field(default_factory=list)
    diverged: bool = False


StepCallback = Callable[[int, nn.Module, torch.optim.Optimizer, TrainState], None]
#: (step, model, optimizer, live masks) -> skip this optimizer step? Called after backward with
#: the dense gradients still in ``p.grad``; may edit the live masks in place (sparse training).
GradHook = Callable[[int, nn.Module, torch.optim.Optimizer, Mapping[str, Tensor]], bool]

#: The loss is read back to the host at most once per this many steps (and at each epoch's end):
#: a read makes the host wait for the GPU, which would idle between launch-bound steps.
READ_EVERY = 50
_REWIND = "rewind"  # a read found a non-finite loss after it: replay from the safe point


def train(
    model: nn.Module,
    bundle: Any,
    sched: Schedule,
    *,
    seed: int,
    state: TrainState | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    mask: Mapping[str, Tensor] | None = None,
    stop_step: int | None = None,
    precision: str = "fp32",
    channels_last: bool = False,
    on_step: Sequence[StepCallback] = (),
    on_epoch: Sequence[StepCallback] = (),
    on_grad: Sequence[GradHook] = (),
    progress: bool | None = None,
    desc: str = "train",
    job: Distributed | None = None,
    sync_at: Callable[[int], bool] | None = None,
    modes: Modes | None = None,
) -> TrainState:
    """Trains ``model`` in place from ``state.step`` up to ``stop_step`` (default: the end).

    Data order and augmentation are a pure function of (seed, epoch, batch index), so training
    continued from a checkpoint equals uninterrupted training. After every full epoch (and at
    the end) the test accuracy is appended to ``state.curve`` and ``on_epoch`` callbacks run.

    Args:
        model: The network (already on its device).
        bundle: A ``DataBundle``.
        sched: Schedule in steps.
        seed: Data-order seed.
        state: Where to continue from (default: step 0).
        optimizer: Optimizer state to continue with (default: ``make_optimizer``'s).
        mask: Pruned weights stay exactly zero when given.
        stop_step: Stop after this many total steps (for pruning at step t).
        precision: "fp32" or "bf16" (autocast).
        channels_last: Use the channels-last memory format for 4-D tensors.
        on_step: Callbacks after every optimizer step (``step`` = steps done).
        on_epoch: Callbacks after each epoch's evaluation.
        on_grad: Hooks after every backward, before gradients are masked (``GradHook``: they
            may edit the mask, skip the optimizer step; ``step`` = steps done before this one).
        progress: Show a tqdm bar (default: only on a terminal); ``desc`` labels it.
        job: Under torchrun: each rank trains on its share of every batch with
            DistributedDataParallel; the result equals single-process training.
        sync_at: Steps (steps done) at which ``on_step`` callbacks observe the state: the loss
            is read before they run there. Default: every step when ``on_step`` is given.
        modes: Opt-in compile / autotune / accumulation (``train.modes``; default: none).

    Returns:
        The updated state; ``state.diverged`` is True if the loss became NaN or infinite.
    """
    state, modes = state or TrainState(), modes or Modes()
    optimizer = optimizer or make_optimizer(model, sched)
    end = sched.total_steps if stop_step is None else min(stop_step, sched.total_steps)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    # Zeroes the pruned weights (and their optimizer state) now and after every step. Sparse
    # training hooks edit its masks in place (``live``); for them the state of dropped weights
    # is kept, as those methods were written and measured (their numbers stay the same).
    keeper = keep_pruned(optimizer, mask, model, zero_state=not on_grad) if mask else None
    model.train()
    net = compiled(job.wrap(model) if job is not None else model, modes)
    shown = sys.stderr.isatty() if progress is None else progress  # silent in logs and CI
    bar = tqdm(total=end, initial=state.step, desc=desc, disable=not shown, leave=False)
    run = _Run(model, net, optimizer, sched, keeper, job, precision, channels_last, bar)
    run.on_step, run.on_grad, run.accumulate = on_step, on_grad, modes.accumulate
    # Reading every step (as before) where the state after a NaN step could not be restored
    # exactly: hooks with state of their own, or DDP's all-reduced loss.
    run.exact = bool(on_grad) or job is not None or (bool(on_step) and sync_at is None)
    run.sync_at = sync_at or run.sync_at
    bundle = on_device(bundle, run.device)
    try:
        with numerics(run.device, precision, modes):
            _epochs(run, state, bundle, seed, end, on_epoch)
    finally:
        bar.close()
        if keeper is not None:
            keeper.remove()
    return state


def _epochs(
    run: _Run, state: TrainState, bundle: Any, seed: int, end: int, on_epoch: Sequence[StepCallback]
) -> None:
    """Trains epoch by epoch up to ``end``, evaluating and calling back after each full one."""
    sched = run.sched
    while state.step < end:
        train_loss = _train_epoch(run, state, bundle, seed, end)
        if isinstance(train_loss, str):  # rewound to the safe point: replay, reading each step
            continue
        if train_loss is None:
            state.diverged = True
            return
        if state.step % sched.steps_per_epoch == 0 or state.step == sched.total_steps:
            state.curve.append(
                epoch_point(
                    run.evaluated,
                    bundle,
                    run.sched,
                    state.step,
                    train_loss,
                    run.precision,
                    run.channels_last,
                    run.device,
                )
            )
            run.bar.set_postfix(acc=f"{state.curve[-1]['test_accuracy']:.3f}")
            for cb in on_epoch:
                cb(state.step, run.model, run.optimizer, state)


@dataclass
class _Run:
    """What every step of one ``train`` call shares; built once, at its start."""

    model: nn.Module
    net: nn.Module  # the model, its DistributedDataParallel wrapper or its compiled wrapper
    optimizer: torch.optim.Optimizer
    sched: Schedule
    keeper: Any  # keep_pruned's handle, or None when training dense
    job: Distributed | None
    precision: str
    channels_last: bool
    bar: Any
    on_step: Sequence[StepCallback] = ()
    on_grad: Sequence[GradHook] = ()
    exact: bool = False  # read every step's loss before its update (the old path)
    accumulate: int = 1  # micro-batches per optimizer step (``train.accumulate``)
    sync_at: Callable[[int], bool] = lambda _step: False
    device: torch.device = field(init=False)
    watch: LossWatch = field(init=False)
    safe: SafePoint = field(init=False)

    def __post_init__(self) -> None:
        self.device = next(self.model.parameters()).device
        self.watch = LossWatch(self.device, READ_EVERY)
        self.safe = SafePoint(self.model, self.optimizer)

    @property
    def evaluated(self) -> nn.Module:
        """What evaluation calls: the compiled network, never DDP's wrapper (it only trains)."""
        return self.model if self.job is not None else self.net


def _train_epoch(
    run: _Run, state: TrainState, bundle: Any, seed: int, end: int
) -> float | str | None:
    """Steps through the rest of ``state.step``'s epoch (never past ``end``): the mean training
    loss of the steps taken, None when a loss is not finite (state as before that step), or
    ``_REWIND`` when a late read found one (state back at the epoch's safe point)."""
    spe = run.sched.steps_per_epoch
    epoch, start = divmod(state.step, spe)
    stop_in_epoch = min(spe, end - epoch * spe)
    batches = bundle.train_batches(
        run.sched.batch_size, seed=seed, epoch=epoch, device=run.device, start_step=start
    )
    if not run.exact:
        run.safe.take(state.step)
        run.watch.reset()
    loss_sum, n_loss = 0.0, 0
    for _, (x, y) in zip(range(start, stop_in_epoch), batches, strict=False):
        loss_value = _step(run, state, x, y)
        if loss_value is None or isinstance(loss_value, str):
            return loss_value
        loss_sum, n_loss = loss_sum + loss_value, n_loss + 1
    if run.exact:
        return loss_sum / max(n_loss, 1)
    reading = run.watch.read()
    return _rewind(run, state) if reading.diverged else reading.mean


def _rewind(run: _Run, state: TrainState) -> str:
    """Back to the safe point, to replay reading every step: the diverged run then stops, and
    stores, exactly where reading every step from the start would have stopped it."""
    state.step = run.safe.restore()
    run.exact = True
    run.bar.n = state.step
    return _REWIND


def _loss(run: _Run, x: Tensor, y: Tensor, total: int) -> Tensor:
    """The loss of (x, y) as its share of the mean loss of a batch of ``total`` examples."""
    smoothing = run.sched.label_smoothing  # of the training loss only; test loss is plain
    with autocast(run.device, run.precision):
        if run.job is None:
            loss = F.cross_entropy(run.net(x), y, label_smoothing=smoothing)
            return loss if len(y) == total else loss * (len(y) / total)
        # Summed over the shard, then scaled: DDP's average is the full-batch mean.
        xs, ys = run.job.shard(x, y)
        loss = F.cross_entropy(run.net(xs), ys, reduction="sum", label_smoothing=smoothing)
        return loss * run.job.loss_scale(total)


def _step(run: _Run, state: TrainState, x: Tensor, y: Tensor) -> float | str | None:
    """One optimizer step on (x, y): its loss (0.0 when only the watch reads it), None (and no
    update) when read and not finite, ``_REWIND`` when a late read found a non-finite loss."""
    if run.channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    for group in run.optimizer.param_groups:
        group["lr"] = run.sched.lr_at(state.step)
    run.optimizer.zero_grad(set_to_none=True)
    # The full-batch mean loss, its gradient in p.grad (summed over micro-batches).
    loss = accumulated_backward(run.net, x, y, run.accumulate, functools.partial(_loss, run))
    loss_value = 0.0
    if run.exact:  # read before the update: a non-finite loss leaves the weights as they were
        loss_value = float(loss) if run.job is None else run.job.mean_loss(loss)
        if not math.isfinite(loss_value):
            return None
    else:
        run.watch.add(loss, state.step)  # checked on the device; read every READ_EVERY steps
    keeper = run.keeper
    live = keeper.masks if keeper is not None else {}  # what the hooks may edit
    skip = False
    for hook in run.on_grad:
        skip = hook(state.step, run.model, run.optimizer, live) or skip
    if keeper is not None:
        keeper.mask_grads()
    if not skip:
        run.optimizer.step()  # keep_pruned's post-hook re-applies the mask
    elif keeper is not None:
        keeper.apply()
    state.step += 1
    run.bar.update(1)
    # The callbacks must never see a state past a non-finite loss: read first where they look.
    if not run.exact and (run.watch.due() or run.sync_at(state.step)):
        if run.watch.read().diverged:
            return _rewind(run, state)
    for cb in run.on_step:
        cb(state.step, run.model, run.optimizer, state)
    return loss_value
