"""A fused pack of runs, each stored as its solo run would be (issue 23).

Every member keeps its own bookkeeping: its claim (taken in sorted run-id order, so two sweeps
that pack the same runs differently never deadlock and never train a run twice), its
prerequisites, scoring and mask (its recipe, before the pack trains), its folder with
``latest.pt`` after every epoch, ``metrics.jsonl``, ``final.pt``, ``mask.pt`` and ``result.json``,
which records the pack under ``fused``. Only the training steps are shared (``train.fused``).

Identity: a member's numbers never depend on its partners. On the CPU, vmap runs a pack of one
through a plain convolution and any larger pack through a batched one (checked: K = 2, 3, 4, 5
at any slot give bit-identical members; K = 1 differs), so a lone member trains beside a copy of
itself that is thrown away. A pack resumes from its members' own ``latest.pt``; members whose
checkpoints stand at different steps (a kill between two members' writes) resume as separate
packs, which gives the same numbers for the same reason.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from earlyprune.core.device_identity import deterministic
from earlyprune.core.errors import SpecError
from earlyprune.masks.mask import Mask
from earlyprune.run.bookkeeping import USER_MISTAKES, Slot, running, served
from earlyprune.run.environment import is_environmental, pinned_threads
from earlyprune.run.fused_packs import check_fusable
from earlyprune.run.pipeline import run_prerequisites, stored_mask
from earlyprune.run.recipes import recipe_for
from earlyprune.run.record import failure, record
from earlyprune.run.spec import RunSpec
from earlyprune.run.stages import Setup, prepare
from earlyprune.run.store import RunStore
from earlyprune.train.fused import FusedPack, Member, PackState
from earlyprune.train.fused_loop import train_pack

#: ``run_pack`` outcome of a member another live worker holds (it is handed out again later).
BUSY = "busy"
#: The engine value of a run trained in a pack.
FUSED = "fused"


@dataclass
class _Live:
    """A member being trained here: its setup, store slot, network, mask and resume point."""

    setup: Setup
    slot: Slot
    model: nn.Module
    mask: Mask | None
    resume: dict[str, Any] | None

    @property
    def rid(self) -> str:
        return self.setup.spec.run_id


def run_pack(
    specs: Sequence[RunSpec],
    store: RunStore,
    *,
    data_root: str | None = None,
    retry_failed: bool = False,
    wait: bool = False,
) -> dict[str, str]:
    """Trains ``specs`` (``engine="fused"``) as one pack; returns each run's status or ``BUSY``.

    Members stored already are served; members a live worker holds drop out (``BUSY``) unless
    ``wait``. User mistakes raise before anything is written; an environment failure leaves
    every member's ``latest.pt`` to resume from; a run's own failure is stored for every member.

    Raises:
        SpecError: If a spec is not a fused run or the specs cannot share a pack.
    """
    for spec in specs:
        if spec.engine != FUSED:
            raise SpecError(f"run {spec.run_id} is a solo run (engine {spec.engine!r})")
    check_fusable(list(specs))
    outcome: dict[str, str] = {}
    todo = []
    for spec in sorted(specs, key=lambda s: s.run_id):  # the claims' order: no deadlock
        done = served(spec, store, retry_failed)
        if done is not None:
            outcome[spec.run_id] = str(done["status"])
        elif not wait and store.claim_state(spec.run_id) == "live":
            outcome[spec.run_id] = BUSY
        else:
            todo.append(spec)
    setups = [prepare(spec, data_root) for spec in todo]
    # One run id, one thread count (a shared field of the pack), however it is launched.
    with pinned_threads(specs[0].threads), contextlib.ExitStack() as claims:
        slots = [
            claims.enter_context(
                running(store, s, recipe_for(s.spec).prerequisites(s.spec), retry_failed)
            )
            for s in setups
        ]
        pending = [(s, slot) for s, slot in zip(setups, slots, strict=True) if slot.result is None]
        if pending:
            _train_or_fail(pending, store)
    for setup, slot in zip(setups, slots, strict=True):
        outcome[setup.spec.run_id] = str(slot.result["status"])  # type: ignore[index]
    return outcome


def _train_or_fail(pending: list[tuple[Setup, Slot]], store: RunStore) -> None:
    """Trains the pending members; a failure of the pack's own is every member's result."""
    first = pending[0][0]  # precision is a field the pack shares
    try:
        with deterministic(first.device, first.spec.precision):  # scoring and training
            live = [_member(setup, slot, store) for setup, slot in pending]
            for group in _by_resume_step(live):
                _train_group(group, store)
    except USER_MISTAKES:
        raise
    except Exception as exc:
        if is_environmental(exc, False):
            raise  # each member's claim turns it into RunInterrupted: checkpoints kept
        for setup, slot in pending:
            if slot.result is None:
                slot.result = failure(setup, exc, slot.seconds())


def _member(setup: Setup, slot: Slot, store: RunStore) -> _Live:
    """The member's prerequisites, weights and mask, as its recipe makes them (``pipeline.run``)."""
    recipe = recipe_for(setup.spec)
    if recipe.moves_mask:  # check_fusable refuses these; never train a moving mask as fixed
        raise SpecError(f"run {setup.spec.run_id}: sparse training cannot be fused")
    run_prerequisites(recipe, setup, store)
    model = recipe.weights_to_prune(setup, store)
    mask = stored_mask(recipe, setup, store, model) if recipe.prunes else None
    model = recipe.weights_to_train(setup, store, model)
    resume = store.load_tensors(setup.spec.run_id, "latest.pt")
    return _Live(setup, slot, model, mask, resume)


def _by_resume_step(live: list[_Live]) -> list[list[_Live]]:
    groups: dict[int, list[_Live]] = {}
    for m in live:
        groups.setdefault(int(m.resume["step"]) if m.resume else 0, []).append(m)
    return list(groups.values())


def _train_group(group: list[_Live], store: RunStore) -> None:
    """Trains members that stand at one step as one pack, then records each of them."""
    setup = group[0].setup
    members = [Member(m.model, m.setup.spec.seed, m.mask, m.rid) for m in group]
    resumes = [m.resume for m in group]
    if len(members) == 1:  # a pack of one computes otherwise (module docstring): pad it
        members.append(Member(copy.deepcopy(group[0].model), members[0].seed, group[0].mask, "pad"))
        resumes.append(resumes[0])
    pack = FusedPack(members, setup.sched, precision=setup.spec.precision)
    state = None
    if resumes[0]:
        state = pack.restore(
            {
                "names": pack.names,
                "step": resumes[0]["step"],
                "diverged_at": [r["diverged_at"] for r in resumes],  # type: ignore[index]
                "members": resumes,
            }
        )
    state = train_pack(pack, setup.bundle, state=state, on_epoch=[_saver(group, store)])
    ids = [m.rid for m in group]
    for k, m in enumerate(group):
        solo = state.member(k)
        pack.write_back(k, m.model)
        if not solo.diverged:
            store.save_tensors(
                m.rid, "final.pt", {"model": m.model.state_dict(), "step": solo.step}
            )
        m.slot.result = record(m.setup, m.model, m.mask, solo, m.slot.seconds())
        m.slot.result["fused"] = {"k": len(group), "partners": [i for i in ids if i != m.rid]}


def _saver(group: list[_Live], store: RunStore):
    """The per-epoch callback: each member's resume point, metrics line and heartbeat."""

    def save(_step: int, pack: FusedPack, state: PackState) -> None:
        ckpt = pack.checkpoint(state)
        for k, m in enumerate(group):
            own = ckpt["members"][k]
            stopped = state.diverged_at[k]
            # The pack's step (not the member's stop step) and when it diverged: a resume point.
            point = {**own, "step": state.step, "diverged_at": stopped}
            store.save_tensors(m.rid, "latest.pt", point)
            if stopped is None:  # a diverged member's curve ended where its solo run's does
                store.append_metrics(m.rid, state.curves[k][-1])
            store.heartbeat(m.rid)

    return save
