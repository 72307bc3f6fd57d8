"""One run, the way the paper runs it.

init → train dense to step t → score → mask → ablate → retrain with the full LR schedule →
evaluate → record. Finished runs are served from the store; interrupted ones resume.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import platform
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import torch
from torch import nn

from earlyprune import __version__
from earlyprune.core.errors import DatasetError, SpecError, StoreError
from earlyprune.core.warn import tagged_warnings
from earlyprune.masks.connectivity import effective_mask, is_disconnected, is_disconnected_refusal
from earlyprune.masks.density import layer_density, neuron_collapse, overall_density
from earlyprune.masks.flops import flops_record
from earlyprune.masks.mask import Mask, check_mask, full_mask
from earlyprune.methods import sparse_training
from earlyprune.run import imp, numerics
from earlyprune.run.environment import (
    RunInterrupted,
    check_world_size,
    is_environmental,
    pinned_threads,
)
from earlyprune.run.environment import record as environment_record
from earlyprune.run.integrity import artifacts, damage, requeue, set_aside
from earlyprune.run.logs import Log
from earlyprune.run.spec import BASELINES, DENSE, IMP, PRESETS, RunSpec
from earlyprune.run.stages import (
    Setup,
    ablate_mask,
    choose_mask,
    fresh_model,
    is_dense,
    needs_dense,
    prepare,
    train_run,
    weights_to_prune,
    weights_to_train,
)
from earlyprune.run.store import RunStore
from earlyprune.train.distributed import Distributed
from earlyprune.train.loop import StepCallback, TrainState

#: Channel-sparsity thresholds recorded for the neuron-collapse analysis (1.0 = fully pruned).
COLLAPSE_THRESHOLDS = (0.5, 0.8, 0.9, 0.95, 0.99, 1.0)
_USER_MISTAKES = (SpecError, DatasetError, StoreError)


def run(
    spec: RunSpec,
    store: RunStore,
    *,
    data_root: str | None = None,
    callbacks: Sequence[StepCallback] = (),
    progress: bool | None = None,
    retry_failed: bool = False,
    job: Distributed | None = None,
    log: Log | None = None,
) -> dict[str, Any]:
    """Runs ``spec`` (or returns its stored result) and returns the result record.

    User mistakes (``SpecError``, ``DatasetError``, ``StoreError``) raise before anything is
    written. Any other exception inside the run is recorded as status ``failed`` with its
    message; a ``BaseException`` (KeyboardInterrupt, SystemExit, a kill) and the environment's
    failures (out of memory, a lost torchrun peer: ``RunInterrupted``) leave the checkpoints to
    resume. A mask that cuts every input→output path is refused (``SpecError``) unless
    ``spec.allow_disconnected``; with it the run trains and is stored with status
    ``disconnected``. A stored result is served only if its artifacts are intact
    (``integrity``); a damaged one is set aside and redone. The run pins ``spec.threads`` while it runs.
    Under torchrun pass ``job`` (and a ``DistStore``): every rank calls ``run`` alike. ``log``
    writes a line per epoch (of this run and of a dense run it trains first).
    """
    check_world_size(spec, job.world_size if job is not None else 1)
    stored = store.read_result(spec.run_id)
    if _to_serve(stored, retry_failed):
        check_stored(stored, store)  # older numerics: refused (one line), even if damaged too
    if servable(stored, store, retry_failed):
        return stored
    # One run id, one thread count, however it is launched; its warnings say whose they are.
    with pinned_threads(spec.threads), tagged_warnings(f"{spec.run_id} ({spec.method})"):
        return _run(spec, store, data_root, callbacks, progress, retry_failed, job, log)


def _run(
    spec: RunSpec,
    store: RunStore,
    data_root: str | None,
    callbacks: Sequence[StepCallback],
    progress: bool | None,
    retry_failed: bool,
    job: Distributed | None,
    log: Log | None,
) -> dict[str, Any]:
    setup = prepare(spec, data_root, job, log)
    rid = spec.run_id
    if spec.method in BASELINES or (not is_dense(spec) and setup.prune_step > 0):
        dense = store.read_result(spec.dense_spec().run_id)  # its shared weights: same numerics
        if dense is not None:
            check_stored(dense, store)
    try:
        with store.claim(rid):
            stored = store.read_result(rid)
            if _to_serve(stored, retry_failed):
                check_stored(stored, store)
            if servable(stored, store, retry_failed):
                return stored
            bad = damage(store.run_dir(rid), stored) if stored is not None else {}
            if bad and store.writes:  # damaged: set aside, redo from step 0 (latest.pt is gone)
                requeue(store.run_dir(rid), bad)
            numerics.adopt(store, rid)  # checkpoints of older numerics are never resumed from
            store.write_json(rid, "spec.json", spec.to_dict())
            started = time.perf_counter()
            try:
                model, mask = (fresh_model(setup), None) if is_dense(spec) else pruned(setup, store)
                state = retrain(setup, store, model, mask, callbacks, progress)
                result = record(setup, model, mask, state, time.perf_counter() - started)
            except _USER_MISTAKES:
                forget_attempt(store, rid)  # a mistake found mid-run (a degenerate mask)
                raise
            except Exception as exc:
                if is_environmental(exc, job is not None):  # not the run's fault: resumable
                    first = str(exc).splitlines()[0] if str(exc) else ""
                    raise RunInterrupted(
                        f"run {rid} interrupted: {type(exc).__name__}: {first}"
                    ) from exc
                # The run's own failure: record it, let the sweep go on.
                result = failure(setup, exc, time.perf_counter() - started)
            if store.writes:
                result["artifacts"] = artifacts(store.run_dir(rid))
            store.write_json(rid, "result.json", result)
            store.delete(rid, "latest.pt")
    except _USER_MISTAKES:
        for folder in (store.run_dir(rid), store.root):  # a refused first attempt leaves none
            with contextlib.suppress(OSError):
                folder.rmdir()  # only ever removes an empty folder
        raise
    return result


def _to_serve(stored: dict[str, Any] | None, retry_failed: bool) -> bool:
    return stored is not None and not to_retry(stored, retry_failed)


def to_retry(stored: dict[str, Any], retry_failed: bool) -> bool:
    """A stored ``failed`` result to run again: with ``retry_failed``, or always when it is an
    older sweep's refusal of a disconnected mask (an outcome now: status ``disconnected``)."""
    return stored["status"] == "failed" and (
        retry_failed or is_disconnected_refusal(stored.get("error"))
    )


def servable(stored: dict[str, Any] | None, store: RunStore, retry_failed: bool) -> bool:
    """A stored result that may be returned as it is: intact, and not a failure to retry.

    A dense run whose only damage is in its checkpoints (``final.pt``, ``step_<t>.pt``) is
    served: those files are set aside, and ``stages.dense_weights`` replays them bit-identically
    (to the recorded hash) when a run needs them, without training the dense run again.
    """
    if stored is None or to_retry(stored, retry_failed):
        return False
    folder = store.run_dir(stored["run_id"])
    bad = damage(folder, stored)
    if bad and stored.get("spec", {}).get("method") == DENSE and all(map(_replayable, bad)):
        if store.writes:
            set_aside(folder, bad)
        return True
    return not bad


def _replayable(name: str) -> bool:
    return name == "final.pt" or re.fullmatch(r"step_\d+\.pt", name) is not None


def forget_attempt(store: RunStore, run_id: str) -> None:
    """Removes what a refused first attempt wrote into its own folder: its spec and marker, if
    nothing else is there (a resumed run keeps its checkpoints and the marker that vouches for
    them)."""
    folder = store.run_dir(run_id)
    own = {"spec.json", numerics.MARKER, "claim"}
    if folder.is_dir() and all(p.name in own or p.name.startswith(".") for p in folder.iterdir()):
        for name in ("spec.json", numerics.MARKER):
            store.delete(run_id, name)


def preset_fingerprint(name: str) -> dict[str, Any]:
    """The preset's hyperparameters as stored in ``result.json`` (JSON types: lists, not tuples)."""
    return json.loads(json.dumps(dataclasses.asdict(PRESETS.get(name))))


def check_stored(result: dict[str, Any], store: RunStore) -> dict[str, Any]:
    """Refuses (``SpecError``, one line) a stored result computed under other numerics or
    another definition of its preset; returns it otherwise."""
    return check_preset(numerics.check_current(result, store), store)


def check_preset(result: dict[str, Any], store: RunStore) -> dict[str, Any]:
    """Refuses a stored result trained under another definition of its preset.

    Run ids hash the preset's *name*; if a preset's hyperparameters change between versions,
    old results would otherwise be served as if they were this version's.
    """
    stored = result.get("preset")
    name = result.get("spec", {}).get("preset")
    if stored is not None and name in PRESETS and stored != preset_fingerprint(name):
        raise SpecError(
            f"run {result['run_id']} in {store.root} was trained with another definition of "
            f"preset {name!r} (an older earlyprune?); use a new --store"
        )
    return result


def pruned(setup: Setup, store: RunStore) -> tuple[nn.Module, Mask]:
    """Weights at step t → scores → mask → ablation → rewind; ``mask.pt`` is the trained mask."""
    rid = setup.spec.run_id
    if needs_dense(setup):  # the dense run it starts from: run (or wait for) it first
        run(setup.spec.dense_spec(), store, data_root=setup.data_root, job=setup.job, log=setup.log)
    model = weights_to_prune(setup, store)
    previous = imp.previous_level(setup, store, run) if setup.spec.method == IMP else None
    mask = store.load_tensors(rid, "mask.pt")
    try:
        mask = None if mask is None else check_mask(model, mask)
    except ValueError:  # a mask file that does not fit this network is not this run's
        mask = None
    if mask is None:
        if setup.job is None or setup.job.is_main:  # computed once, on rank 0
            chosen = (
                choose_mask(setup, model) if previous is None else imp.level_mask(setup, previous)
            )
            mask = ablate_mask(setup, chosen)
        if setup.job is not None:
            mask = setup.job.broadcast_mask(mask, like=full_mask(model))
        store.save_tensors(rid, "mask.pt", {n: m.cpu() for n, m in mask.items()})
    mask = {n: m.to(setup.device) for n, m in mask.items()}
    return weights_to_train(setup, store, model), mask


def retrain(
    setup: Setup,
    store: RunStore,
    model: nn.Module,
    mask: Mask | None,
    callbacks: Sequence[StepCallback],
    progress: bool | None,
) -> TrainState:
    """Trains with the full schedule; the dense run also keeps its rewind-step checkpoint."""
    rid = setup.spec.run_id
    keep = [setup.preset.rewind_step] if is_dense(setup.spec) else []
    state = train_run(
        setup, store, rid, model, mask, callbacks=callbacks, save_steps=keep, progress=progress
    )
    if not state.diverged:
        final = {"model": model.state_dict(), "step": state.step}
        if mask is not None and sparse_training.is_sparse_training(setup.spec.method):
            final["mask"] = {n: m.cpu() for n, m in mask.items()}  # the moved mask's final state
        store.save_tensors(rid, "final.pt", final)
    return state


def record(
    setup: Setup, model: nn.Module, mask: Mask | None, state: TrainState, seconds: float
) -> dict[str, Any]:
    """The result record (``result.json``)."""
    mask = mask if mask is not None else full_mask(model)
    effective = effective_mask(model, mask, tuple(setup.bundle.input_shape))
    collapse = [neuron_collapse(model, mask, t) for t in COLLAPSE_THRESHOLDS]
    accs = [c["test_accuracy"] for c in state.curve]
    ok = not state.diverged and bool(accs)
    # Every input→output path cut (allow_disconnected; every sweep): trained as the paper does,
    # an outcome at chance accuracy rather than a failure, and labelled as what it is.
    status = "diverged" if not ok else "disconnected" if is_disconnected(effective) else "ok"
    return {
        **_header(setup, status, None, seconds),
        "test_accuracy": accs[-1] if ok else None,
        "best_test_accuracy": max(accs) if ok else None,
        "test_loss": state.curve[-1]["test_loss"] if ok else None,
        "density": overall_density(mask),
        "layer_density": layer_density(mask),
        # Weights on some input→output path (Vysogorets & Kempe 2021); ≤ density.
        "effective_density": overall_density(effective),
        "layer_effective_density": layer_density(effective),
        "layer_numel": {n: m.numel() for n, m in mask.items()},
        "flops": flops_record(model, setup.bundle.input_shape, mask),
        "neuron_collapse": {
            "thresholds": list(COLLAPSE_THRESHOLDS),
            "overall": [c["overall"] for c in collapse],
            "per_layer": {
                n: [c["per_layer"][n] for c in collapse] for n in collapse[0]["per_layer"]
            },
        },
        "curve": state.curve,
        "steps_trained": state.step,
        **sparse_training.describe(setup.spec, setup.sched.total_steps),
    }


def failure(setup: Setup, exc: BaseException, seconds: float) -> dict[str, Any]:
    message = f"{type(exc).__name__}: {exc}{raised_at(exc)}"
    return {
        **_header(setup, "failed", message, seconds),
        "test_accuracy": None,
        "best_test_accuracy": None,
    }


def raised_at(exc: BaseException) -> str:
    """`` (at FILE, line N)``: the deepest frame outside torch, so that a bug in a user's scoring
    function (or ours) is named by its file and line; empty without a traceback."""
    import os
    import traceback

    home = os.path.dirname(torch.__file__)
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(home)]
    return f" (at {frames[-1].filename}, line {frames[-1].lineno})" if frames else ""


def _header(setup: Setup, status: str, error: str | None, seconds: float) -> dict[str, Any]:
    spec = setup.spec
    return {
        "run_id": spec.run_id,
        # The effective prune step, so that analyses group runs by what was actually done.
        "spec": {**spec.to_dict(), "prune_step": setup.prune_step},
        "status": status,
        "error": error,
        "prune_step": setup.prune_step,
        "total_steps": setup.sched.total_steps,
        "preset": preset_fingerprint(spec.preset),
        "numerics_version": numerics.NUMERICS_VERSION,
        # What training actually used, in steps (the preset's values where the spec left them).
        "schedule": json.loads(json.dumps(dataclasses.asdict(setup.sched))),  # as stored
        "timings": {"total_s": round(seconds, 3)},
        "environment": environment_record(setup),
        "versions": {
            "earlyprune": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "device": str(setup.device),
        },
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
