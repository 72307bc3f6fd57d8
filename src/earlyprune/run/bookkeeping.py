"""The store's bookkeeping around one run, out of the pipeline's sight.

:func:`served` returns a finished run's stored result before anything is loaded;
:func:`running` is the one context manager around a run's work: it serves a result another
worker stored meanwhile, claims the run, sets damaged artifacts aside, adopts the current
numerics, and on the way out stores the result (or the run's own failure), releases the claim
and tidies what a refused attempt wrote. Environment failures never become stored results.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from earlyprune.core.errors import DatasetError, SpecError, StoreError
from earlyprune.masks.connectivity import is_disconnected_refusal
from earlyprune.run import numerics
from earlyprune.run.environment import RunInterrupted, is_environmental
from earlyprune.run.integrity import artifacts, damage, requeue, set_aside
from earlyprune.run.memory import OOM_FILE, counted, is_out_of_memory
from earlyprune.run.record import failure, preset_fingerprint
from earlyprune.run.spec import DENSE, PRESETS, RunSpec
from earlyprune.run.stages import Setup
from earlyprune.run.store import RunStore

#: A user's mistake: raised before anything is written (or what was written is taken back).
USER_MISTAKES = (SpecError, DatasetError, StoreError)


@dataclass
class Slot:
    """A run's place in the store while it runs: ``result`` is set (served, or by the run)."""

    result: dict[str, Any] | None = None
    started: float = field(default_factory=time.perf_counter)

    def seconds(self) -> float:
        """Seconds since the run's work started."""
        return time.perf_counter() - self.started


def served(spec: RunSpec, store: RunStore, retry_failed: bool) -> dict[str, Any] | None:
    """The stored result of ``spec`` if it may be returned as it is; a stale one is refused."""
    stored = store.read_result(spec.run_id)
    if _to_serve(stored, retry_failed):
        check_stored(stored, store)  # older numerics: refused (one line), even if damaged too
    return stored if servable(stored, store, retry_failed) else None


@contextlib.contextmanager
def running(
    store: RunStore, setup: Setup, prerequisites: Sequence[RunSpec], retry_failed: bool
) -> Iterator[Slot]:
    """Holds ``setup.spec``'s claim while the body computes ``slot.result`` (if it is None).

    Stored prerequisites of other numerics are refused before anything is written. A result
    another worker stored meanwhile is served (``slot.result`` set on entry). The body's user
    mistakes propagate (what the attempt wrote is removed); the environment's failures become
    ``RunInterrupted`` (checkpoints kept, nothing stored); any other exception is stored as the
    run's ``failed`` result.
    """
    rid = setup.spec.run_id
    for pre in prerequisites:  # their shared weights must be of today's numerics
        if _to_serve(found := store.read_result(pre.run_id), False):
            check_stored(found, store)
    try:
        with store.claim(rid):
            slot = Slot(result=served(setup.spec, store, retry_failed))
            if slot.result is not None:
                yield slot
                return
            stored = store.read_result(rid)
            bad = damage(store.run_dir(rid), stored) if stored is not None else {}
            if bad and store.writes:  # damaged: set aside, redo from step 0 (latest.pt is gone)
                requeue(store.run_dir(rid), bad)
            numerics.adopt(store, rid)  # checkpoints of older numerics are never resumed from
            store.write_json(rid, "spec.json", setup.spec.to_dict())
            slot = Slot()
            try:
                yield slot
            except USER_MISTAKES:
                forget_attempt(store, rid)  # a mistake found mid-run (a degenerate mask)
                raise
            except Exception as exc:
                # The third out-of-memory error at one stage is the run's own (it would recur).
                repeated = counted(store, rid, exc) if is_out_of_memory(exc) else None
                if repeated is None and is_environmental(exc, setup.job is not None):
                    first = str(exc).splitlines()[0] if str(exc) else ""
                    raise RunInterrupted(
                        f"run {rid} interrupted: {type(exc).__name__}: {first}"
                    ) from exc
                # The run's own failure: record it, let the sweep go on.
                slot.result = failure(setup, repeated or exc, slot.seconds())
            assert slot.result is not None, "the run's body set no result"
            store.delete(rid, OOM_FILE)  # a result stands: earlier attempts no longer count
            if store.writes:
                slot.result["artifacts"] = artifacts(store.run_dir(rid))
            store.write_json(rid, "result.json", slot.result)
            store.delete(rid, "latest.pt")
    except USER_MISTAKES:
        for folder in (store.run_dir(rid), store.root):  # a refused first attempt leaves none
            with contextlib.suppress(OSError):
                folder.rmdir()  # only ever removes an empty folder
        raise


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
