"""One run, the way the paper runs it (Section 3).

prepare → weights to prune → score and mask → ablate → weights to train → retrain → record.
What differs between kinds of run (dense, at init, at step t, after training, LTR, IMP, sparse
training) is the run's recipe (``earlyprune.run.recipes``); claims, serving stored results,
damage and numerics are the store's bookkeeping (``earlyprune.run.bookkeeping``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from earlyprune.core.device_identity import deterministic
from earlyprune.core.errors import SpecError
from earlyprune.core.warn import tagged_warnings
from earlyprune.masks.mask import Mask, check_mask, full_mask
from earlyprune.run.bookkeeping import (  # noqa: F401  (re-exported: callers import them here)
    check_preset,
    check_stored,
    forget_attempt,
    running,
    servable,
    served,
    to_retry,
)
from earlyprune.run.environment import check_world_size, pinned_threads
from earlyprune.run.logs import Log
from earlyprune.run.recipes import Recipe, recipe_for
from earlyprune.run.recipes.base import ablate_mask
from earlyprune.run.record import (  # noqa: F401  (re-exported: callers import them here)
    COLLAPSE_THRESHOLDS,
    failure,
    preset_fingerprint,
    raised_at,
    record,
)
from earlyprune.run.spec import RunSpec
from earlyprune.run.stages import Setup, prepare, train_run
from earlyprune.run.store import RunStore
from earlyprune.train.distributed import Distributed
from earlyprune.train.loop import StepCallback, TrainState


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
    check_launch(spec, job)
    if (done := served(spec, store, retry_failed)) is not None:
        return done
    # One run id, one thread count, however it is launched; its warnings say whose they are.
    with pinned_threads(spec.threads), tagged_warnings(f"{spec.run_id} ({spec.method})"):
        setup = prepare(spec, data_root, job, log)
        recipe = recipe_for(spec)
        # Scoring, training and evaluation alike: on CUDA no TF32 in fp32, deterministic kernels.
        numerics = deterministic(setup.device, spec.precision, autotune=spec.autotune)
        with running(store, setup, recipe.prerequisites(spec), retry_failed) as slot, numerics:
            if slot.result is None:  # not stored meanwhile by another worker
                run_prerequisites(recipe, setup, store)
                model = recipe.weights_to_prune(setup, store)
                mask = stored_mask(recipe, setup, store, model) if recipe.prunes else None
                model = recipe.weights_to_train(setup, store, model)
                state = retrain(recipe, setup, store, model, mask, callbacks, progress)
                slot.result = record(setup, model, mask, state, slot.seconds())
    return slot.result


def check_launch(spec: RunSpec, job: Distributed | None) -> None:
    """Refuses, before anything is read or written, a spec this process cannot run alone: one
    made for another torchrun world size, or a fused one (its numbers are a pack's:
    ``run.fused_run.run_pack`` trains it)."""
    check_world_size(spec, job.world_size if job is not None else 1)
    if spec.engine != "solo":
        raise SpecError(f"run {spec.run_id} is a fused run; train it with run_pack or --fuse")


def run_prerequisites(recipe: Recipe, setup: Setup, store: RunStore) -> None:
    """Runs (or waits for, or finds stored) the runs this one starts from, in order.

    Under torchrun every rank runs them alike (running is collective). Only the dense run gets
    the per-epoch log: the levels below an IMP level are quiet, as they always were.
    """
    dense = setup.spec.dense_spec()
    for pre in recipe.prerequisites(setup.spec):
        log = setup.log if pre == dense else None
        run(pre, store, data_root=setup.data_root, job=setup.job, log=log)


def stored_mask(recipe: Recipe, setup: Setup, store: RunStore, model: nn.Module) -> Mask:
    """The run's mask: ``mask.pt`` if stored and fitting, else chosen, ablated and stored.

    Chosen once, on rank 0, and broadcast under torchrun. ``mask.pt`` is the mask training
    starts from (sparse training moves it; its final state is in ``final.pt``).
    """
    rid = setup.spec.run_id
    mask = store.load_tensors(rid, "mask.pt")
    try:
        mask = None if mask is None else check_mask(model, mask)
    except ValueError:  # a mask file that does not fit this network is not this run's
        mask = None
    if mask is None:
        if setup.job is None or setup.job.is_main:  # computed once, on rank 0
            mask = ablate_mask(setup, recipe.choose_mask(setup, store, model), model)
        if setup.job is not None:
            mask = setup.job.broadcast_mask(mask, like=full_mask(model))
        store.save_tensors(rid, "mask.pt", {n: m.cpu() for n, m in mask.items()})
    return {n: m.to(setup.device) for n, m in mask.items()}


def retrain(
    recipe: Recipe,
    setup: Setup,
    store: RunStore,
    model: nn.Module,
    mask: Mask | None,
    callbacks: Sequence[StepCallback],
    progress: bool | None,
) -> TrainState:
    """Trains with the full schedule; the dense run also keeps its rewind-step checkpoint."""
    rid = setup.spec.run_id
    keep = recipe.kept_steps(setup)
    state = train_run(
        setup, store, rid, model, mask, callbacks=callbacks, save_steps=keep, progress=progress
    )
    if not state.diverged:
        final = {
            "model": model.state_dict(),
            "step": state.step,
            "device_kind": setup.spec.device_kind,
        }
        if mask is not None and recipe.moves_mask:
            final["mask"] = {n: m.cpu() for n, m in mask.items()}  # the moved mask's final state
        store.save_tensors(rid, "final.pt", final)
    return state
