"""The training loop: the schedule's optimizer and LR rule, masked training, evaluation, callbacks.

The loop is closed; stages extend it through callbacks (``on_epoch``, ``on_step``). Masked
training keeps pruned weights exactly zero with ``keep_pruned``: after every optimizer step the
pruned weights and their optimizer state (momentum, Adam's moments) are multiplied by the mask,
so neither momentum nor weight decay revives them. No forward hooks, so ``state_dict`` keys
stay those of the plain model. ``Schedule`` and ``make_optimizer`` live in ``earlyprune.train.optim``.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from earlyprune.masks.keep import keep_pruned
from earlyprune.train.optim import Schedule, make_optimizer

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


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[None]:
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def evaluate(
    model: nn.Module,
    batches: Iterator[tuple[Tensor, Tensor]],
    *,
    precision: str = "fp32",
    channels_last: bool = False,
) -> tuple[float, float]:
    """Accuracy (fraction) and mean loss over ``batches``, in eval mode; mode restored after."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = total = 0
    loss_sum = 0.0
    with torch.no_grad(), autocast(device, precision):
        for x, y in batches:
            if channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            out = model(x).float()
            loss_sum += float(F.cross_entropy(out, y, reduction="sum"))
            correct += int((out.argmax(1) == y).sum())
            total += y.numel()
    model.train(was_training)
    return correct / max(total, 1), loss_sum / max(total, 1)


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
        on_grad: Hooks after every backward pass, before the gradients are masked (``step`` =
            steps done before this one); they may change the mask (see ``GradHook``) and ask
            to skip this iteration's optimizer step.
        progress: Show a tqdm bar (default: only on a terminal).
        desc: Progress bar label.
        job: Under torchrun: each rank trains on its share of every batch with
            DistributedDataParallel; the result equals single-process training.

    Returns:
        The updated state; ``state.diverged`` is True if the loss became NaN or infinite.
    """
    state = state or TrainState()
    optimizer = optimizer or make_optimizer(model, sched)
    end = sched.total_steps if stop_step is None else min(stop_step, sched.total_steps)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    # Zeroes the pruned weights (and their optimizer state) now and after every step. Sparse
    # training hooks edit its masks in place (``live``); for them the state of dropped weights
    # is kept, as those methods were written and measured (their numbers stay the same).
    keeper = keep_pruned(optimizer, mask, model, zero_state=not on_grad) if mask else None
    model.train()
    net = job.wrap(model) if job is not None else model
    shown = sys.stderr.isatty() if progress is None else progress  # silent in logs and CI
    bar = tqdm(total=end, initial=state.step, desc=desc, disable=not shown, leave=False)
    run = _Run(model, net, optimizer, sched, keeper, job, precision, channels_last, bar)
    run.on_step, run.on_grad = on_step, on_grad
    try:
        while state.step < end:
            train_loss = _train_epoch(run, state, bundle, seed, end)
            if train_loss is None:
                state.diverged = True
                return state
            if state.step % sched.steps_per_epoch == 0 or state.step == sched.total_steps:
                _evaluate_epoch(run, state, bundle, train_loss)
                for cb in on_epoch:
                    cb(state.step, model, optimizer, state)
    finally:
        bar.close()
        if keeper is not None:
            keeper.remove()
    return state


@dataclass
class _Run:
    """What every step of one ``train`` call shares; built once, at its start."""

    model: nn.Module
    net: nn.Module  # the model, or its DistributedDataParallel wrapper under torchrun
    optimizer: torch.optim.Optimizer
    sched: Schedule
    keeper: Any  # keep_pruned's handle, or None when training dense
    job: Distributed | None
    precision: str
    channels_last: bool
    bar: Any
    on_step: Sequence[StepCallback] = ()
    on_grad: Sequence[GradHook] = ()
    device: torch.device = field(init=False)

    def __post_init__(self) -> None:
        self.device = next(self.model.parameters()).device


def _train_epoch(run: _Run, state: TrainState, bundle: Any, seed: int, end: int) -> float | None:
    """Steps through the rest of ``state.step``'s epoch (never past ``end``): the mean training
    loss of the steps taken, or None as soon as a loss is not finite."""
    spe = run.sched.steps_per_epoch
    epoch, start = divmod(state.step, spe)
    stop_in_epoch = min(spe, end - epoch * spe)
    batches = bundle.train_batches(
        run.sched.batch_size, seed=seed, epoch=epoch, device=run.device, start_step=start
    )
    loss_sum, n_loss = 0.0, 0
    for _, (x, y) in zip(range(start, stop_in_epoch), batches, strict=False):
        loss_value = _step(run, state, x, y)
        if loss_value is None:
            return None
        loss_sum, n_loss = loss_sum + loss_value, n_loss + 1
    return loss_sum / max(n_loss, 1)


def _loss(run: _Run, x: Tensor, y: Tensor) -> Tensor:
    smoothing = run.sched.label_smoothing  # of the training loss only; test loss is plain
    with autocast(run.device, run.precision):
        if run.job is None:
            return F.cross_entropy(run.net(x), y, label_smoothing=smoothing)
        # Summed over the shard, then scaled: DDP's average is the full-batch mean.
        xs, ys = run.job.shard(x, y)
        loss = F.cross_entropy(run.net(xs), ys, reduction="sum", label_smoothing=smoothing)
        return loss * run.job.loss_scale(len(y))


def _step(run: _Run, state: TrainState, x: Tensor, y: Tensor) -> float | None:
    """One optimizer step on (x, y): its loss, or None (and no update) when it is not finite."""
    if run.channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    for group in run.optimizer.param_groups:
        group["lr"] = run.sched.lr_at(state.step)
    loss = _loss(run, x, y)
    loss_value = float(loss.detach()) if run.job is None else run.job.mean_loss(loss)
    if not math.isfinite(loss_value):
        return None
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
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
    for cb in run.on_step:
        cb(state.step, run.model, run.optimizer, state)
    return loss_value


def _evaluate_epoch(run: _Run, state: TrainState, bundle: Any, train_loss: float) -> None:
    """Appends the test accuracy and loss at ``state.step`` to ``state.curve``."""
    acc, test_loss = evaluate(
        run.model,
        bundle.test_batches(max(run.sched.batch_size, 256), device=run.device),
        precision=run.precision,
        channels_last=run.channels_last,
    )
    state.curve.append(
        {
            "epoch": math.ceil(state.step / run.sched.steps_per_epoch),
            "step": state.step,
            "lr": run.sched.lr_at(state.step - 1),
            "train_loss": train_loss,
            "test_loss": test_loss,
            "test_accuracy": acc,
        }
    )
    run.bar.set_postfix(acc=f"{acc:.3f}")
