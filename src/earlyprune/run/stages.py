"""What every kind of run shares: its setup, training with checkpoints, the dense weights.

Every stage is resumable: dense training and retraining checkpoint after each epoch
(``latest.pt``), masks are stored before retraining starts, and dense checkpoints at step t are
computed once and shared by every run of the same (network, data, preset, seed).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from earlyprune.core.errors import SpecError
from earlyprune.masks.channels import channel_silencer
from earlyprune.masks.connectivity import DisconnectedMask
from earlyprune.masks.mask import Mask
from earlyprune.methods import sparse_training
from earlyprune.models.user import check_user_model, is_user_model
from earlyprune.run.device_kinds import checked_kind, run_device
from earlyprune.run.environment import check_world_size
from earlyprune.run.hparams import make_schedule
from earlyprune.run.logs import Log
from earlyprune.run.memory_fit import check_fits, check_scoring_fits
from earlyprune.run.spec import DENSE, PRESETS, REWINDING, Preset, RunSpec, register_user_inputs
from earlyprune.run.store import RunStore
from earlyprune.train.distributed import Distributed
from earlyprune.train.loop import Schedule, StepCallback, TrainState, make_optimizer, train
from earlyprune.train.modes import Modes


@dataclass
class Setup:
    """Everything a run needs that follows from its spec: validated before anything is written."""

    spec: RunSpec
    preset: Preset
    bundle: Any
    device: torch.device
    sched: Schedule
    prune_step: int
    data_root: str | None = None
    job: Distributed | None = None  # set under torchrun
    log: Log | None = None  # per-epoch lines (the CLI's; None = silent)


@functools.lru_cache(maxsize=4)
def load_bundle(name: str, root: str | None, n_train: int | None, n_test: int | None) -> Any:
    from earlyprune.data import load_dataset

    bundle = load_dataset(name, root=root)
    if n_train is not None or n_test is not None:
        n_train = min(n_train, len(bundle.train)) if n_train else None
        n_test = min(n_test, len(bundle.test)) if n_test else None
        bundle = bundle.subset(n_train, n_test, seed=0)
    return bundle


def prepare(
    spec: RunSpec,
    data_root: str | None = None,
    job: Distributed | None = None,
    log: Log | None = None,
) -> Setup:
    """Loads data and checks everything that depends on it (e.g. prune step within training)."""
    register_user_inputs(spec)  # a worker process imports the user's network and data here
    preset = PRESETS.get(spec.preset)
    bundle = load_bundle(spec.dataset, data_root, preset.train_subset, preset.test_subset)
    sched = make_schedule(spec, preset, bundle)  # the preset's values where spec leaves them
    total, epochs = sched.total_steps, spec.epochs if spec.epochs is not None else preset.epochs
    if spec.prune_step is not None:
        step = spec.prune_step
    elif spec.method in REWINDING:
        step = default_rewind_step(spec, preset)
    else:
        step = 0
    if step > total:
        # Never blame a step the user did not give: LTR/IMP default to the rewind step, which
        # is the run's rewind_step when set, else the preset's.
        if spec.prune_step is not None:
            what = f"prune step {step}"
        elif spec.rewind_step is not None:
            what = f"rewind step {step} ({spec.method}'s prune step)"
        else:
            what = f"the preset's rewind step {step} ({spec.method}'s default prune step)"
        raise SpecError(
            f"{what} is beyond training: preset {preset.name!r} with "
            f"{epochs:g} epochs has {total} steps"
        )
    if is_user_model(spec.model):  # a wrong output shape is the user's mistake, not a failed run
        check_user_model(spec.model, bundle)
    check_world_size(spec, job.world_size if job is not None else 1)
    if not is_dense(spec) and not spec.allow_disconnected:  # before anything runs or is written
        _preflight_mask(spec, bundle)
    sparse_training.check_schedule(spec, total)
    device = run_device(spec, job.device() if job else spec.device)
    check_fits(spec, bundle, sched, device, job.world_size if job else 1)  # a step > the GPU
    check_scoring_fits(spec, bundle, sched, device)  # a scoring batch > the GPU
    return Setup(spec, preset, bundle, device, sched, step, data_root, job, log)


def default_rewind_step(spec: RunSpec, preset: Preset) -> int:
    """The step LTR and IMP rewind to when the spec gives no prune step.

    The run's ``rewind_step`` when set, else the preset's.
    """
    return spec.rewind_step if spec.rewind_step is not None else preset.rewind_step


def _preflight_mask(spec: RunSpec, bundle: Any) -> None:
    from earlyprune.masks.connectivity import preflight
    from earlyprune.models import MODELS

    shape = tuple(bundle.input_shape)
    try:
        preflight(
            lambda: MODELS.get(spec.model).build(bundle.num_classes, shape),
            spec.sparsity,
            spec.scope,
            shape,
        )
    except DisconnectedMask as exc:
        raise SpecError(f"{exc}") from None


def fresh_model(setup: Setup) -> nn.Module:
    from earlyprune.models import create_model

    spec = setup.spec
    model = create_model(
        spec.model,
        setup.bundle.num_classes,
        input_shape=tuple(setup.bundle.input_shape),
        init=spec.effective_init,
        bn_gamma=spec.bn_gamma,
        seed=spec.seed,
        bias=spec.bias_init,
    )
    return model.to(setup.device)


# ---- training with checkpoints -------------------------------------------------------------
def train_run(
    setup: Setup,
    store: RunStore,
    run_id: str,
    model: nn.Module,
    mask: Mask | None,
    *,
    callbacks: Sequence[StepCallback] = (),
    save_steps: Sequence[int] = (),
    stop_step: int | None = None,
    resume: dict[str, Any] | None = None,
    progress: bool | None = None,
    replay: bool = False,
) -> TrainState:
    """Trains ``model`` (masked if ``mask``) with the full schedule, checkpointing each epoch.

    ``replay=True`` recomputes part of a finished run only to keep ``save_steps``: it writes no
    resume point and no metrics. A sparse-training method moves ``mask`` in place (its current
    state is in every checkpoint), so ``mask`` is the final mask when this returns.

    Resumes from ``resume`` (default: ``latest.pt``). ``save_steps`` are kept as ``step_<t>.pt``.
    """
    optimizer = make_optimizer(model, setup.sched)
    state = TrainState()
    updater = sparse_training.make_updater(setup.spec, setup.sched, mask)
    resume = resume if resume is not None else store.load_tensors(run_id, "latest.pt")
    if resume:  # {} = start from step 0 (not from latest.pt)
        model.load_state_dict(checked_kind(resume, setup.spec, f"{run_id}'s resume point")["model"])
        optimizer.load_state_dict(resume["optimizer"])
        state = TrainState(step=int(resume["step"]), curve=list(resume["curve"]))
        if updater is not None:
            updater.load_state_dict(resume["mask"])

    def snapshot(st: TrainState) -> dict[str, Any]:
        return {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": st.step,
            "curve": st.curve,
            "device_kind": setup.spec.device_kind,
            **({"mask": updater.state_dict()} if updater else {}),
        }

    def at_step(step: int, _m: nn.Module, _o: torch.optim.Optimizer, st: TrainState) -> None:
        if step in save_steps:
            store.save_tensors(run_id, f"step_{step}.pt", snapshot(st))

    def at_epoch(step: int, _m: nn.Module, _o: torch.optim.Optimizer, st: TrainState) -> None:
        store.save_tensors(run_id, "latest.pt", snapshot(st))
        store.append_metrics(run_id, st.curve[-1])
        store.heartbeat(run_id)

    spec = setup.spec
    on_step = [at_step] if save_steps else []
    if mask is not None and spec.structure == "channel":  # pruned channels output exactly 0
        on_step.insert(0, channel_silencer(model, mask))
        on_step[0]()
    main = setup.job is None or setup.job.is_main
    if setup.log is not None and main and not replay:
        callbacks = [setup.log.epoch_callback(run_id, spec, setup.sched), *callbacks]
    return train(
        model,
        setup.bundle,
        setup.sched,
        seed=spec.seed,
        state=state,
        optimizer=optimizer,
        mask=mask,
        stop_step=stop_step,
        precision=spec.precision,
        channels_last=spec.channels_last,
        modes=Modes.of(spec),
        on_step=on_step,
        on_epoch=[] if replay else [at_epoch, *callbacks],
        on_grad=[updater] if updater else [],
        progress=progress if setup.job is None or setup.job.is_main else False,
        desc=f"{spec.method} {run_id}",
        job=setup.job,
        sync_at=set(save_steps).__contains__,  # only at_step stores what it sees
    )


# ---- dense weights shared by many runs ----------------------------------------------------
def dense_weights(setup: Setup, store: RunStore, step: int | None) -> dict[str, Any]:
    """The dense network's state dict at ``step`` (None = end of training), computed once.

    The dense training run must be finished (the pipeline runs a recipe's prerequisites first);
    a step that was not kept, or a checkpoint found unreadable, is recomputed from the nearest earlier kept step (bit-identical: data order
    depends only on the step) and kept.
    """
    dense = setup.spec.dense_spec()
    did = dense.run_id
    result = store.read_result(did)  # a prerequisite: run first by the pipeline
    status = "missing" if result is None else result["status"]
    if status != "ok":
        raise RuntimeError(f"the dense training run {did} this run needs is {status}")
    name = "final.pt" if step is None else f"step_{step}.pt"
    found = store.load_tensors(did, name)
    if found is None:  # never kept, or set aside as unreadable (final.pt too: a bad disk, a copy)
        with store.claim(did):
            found = store.load_tensors(did, name)
            if found is None:
                dense_setup = prepare(dense, setup.data_root, setup.job)
                model = fresh_model(dense_setup)
                end = dense_setup.sched.total_steps if step is None else step
                start = _nearest_kept(store, did, end)
                state = train_run(
                    dense_setup,
                    store,
                    did,
                    model,
                    None,
                    save_steps=[] if step is None else [step],
                    stop_step=step,
                    resume=start or {},
                    replay=True,
                )
                if step is None and not state.diverged:  # byte for byte what the run wrote
                    final = {"model": model.state_dict(), "step": state.step}
                    store.save_tensors(did, name, {**final, "device_kind": dense.device_kind})
                found = store.load_tensors(did, name)
    return checked_kind(found, dense, f"dense checkpoint {name} of run {did}")["model"]


def _nearest_kept(store: RunStore, run_id: str, step: int) -> dict[str, Any] | None:
    kept = []
    for p in store.run_dir(run_id).glob("step_*.pt"):
        m = re.fullmatch(r"step_(\d+)\.pt", p.name)
        if m and int(m.group(1)) < step:
            kept.append(int(m.group(1)))
    for t in sorted(kept, reverse=True):
        ck = store.load_tensors(run_id, f"step_{t}.pt")
        if ck is not None:
            return ck
    return None


def is_dense(spec: RunSpec) -> bool:
    return spec.method == DENSE
