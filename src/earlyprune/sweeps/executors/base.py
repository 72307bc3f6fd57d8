"""What executors share: the task a worker runs, the order runs are handed out in, the checks.

Workers coordinate only through the store. ``run_one`` never writes a result itself except to
record a failure that ``pipeline.run`` could not record; the claim (``RunStore.claim``) taken
inside ``pipeline.run`` is what makes two workers — of one sweep or of two — never run the same
spec at once, and its pid + host let the next sweep break the claim of a killed worker at once.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from datetime import UTC, datetime

from earlyprune.core.errors import DatasetError, SpecError, StoreError, WrongDevice
from earlyprune.core.processes import pid_alive
from earlyprune.core.user_functions import UserFileChanged
from earlyprune.run.environment import RunInterrupted
from earlyprune.run.hparams import HPARAMS
from earlyprune.run.hparams import describe as describe_hparams
from earlyprune.run.memory import counted, is_out_of_memory
from earlyprune.run.numerics import NUMERICS_VERSION
from earlyprune.run.recipes import recipe_for
from earlyprune.run.spec import DENSE, REWINDING, RunSpec
from earlyprune.run.store import ClaimBusy, RunStore

#: ``run_one`` outcome when another live worker holds the run's claim (handed out again later).
BUSY = "busy"
#: ``run_one`` outcome when the environment stopped the run (no result stored; it resumes).
INTERRUPTED = "interrupted"

#: ``submit(spec, wait)`` → a future of ``run_one``'s outcome; ``wait`` = block on a busy claim.
Submit = Callable[[RunSpec, bool], "Future[str]"]


def prerequisites(spec: RunSpec) -> list[RunSpec]:
    """The runs ``spec`` starts from (its recipe says which: the dense run, the previous IMP
    level), in the order they run."""
    return recipe_for(spec).prerequisites(spec)


def run_one(
    spec: RunSpec, store_root: str, data_root: str | None, retry_failed: bool, wait: bool
) -> str:
    """Runs one spec (or finds it done) in this process; returns its status or ``BUSY``.

    Anything that escapes ``pipeline.run`` — a mistake only the run itself could find, such as
    a dataset with too few examples for scoring — is recorded as ``failed`` so the sweep goes on.
    """
    from earlyprune.run.pipeline import run

    store = RunStore(store_root)
    rid = spec.run_id
    if not wait and store.read_result(rid) is None and store.claim_state(rid) == "live":
        return BUSY  # another worker is on it: do other runs first instead of waiting here
    try:
        if spec.engine != "solo":  # a fused run handed out alone: a pack of one
            from earlyprune.run.fused_run import run_pack

            return run_pack([spec], store, data_root=data_root, retry_failed=retry_failed)[rid]
        result = run(spec, store, data_root=data_root, progress=False, retry_failed=retry_failed)
        return str(result["status"])
    except StoreError:  # disk full, permission denied: the run did not fail, the store did
        raise
    except RunInterrupted as exc:  # out of memory...: left resumable, the sweep goes on
        print(f"earlyprune: {exc}; left to resume", file=sys.stderr)
        return INTERRUPTED
    except (UserFileChanged, WrongDevice) as exc:  # not this code's or machine's run: pending
        print(f"earlyprune: run {rid} refused: {exc}", file=sys.stderr)
        return INTERRUPTED
    except Exception as exc:
        failed: BaseException = exc
        if is_out_of_memory(exc):  # before the run's claim (loading data): counted as in it
            repeated = counted(store, rid, exc)
            if repeated is None:
                print(
                    f"earlyprune: run {rid} interrupted: {describe(exc)}; left to resume",
                    file=sys.stderr,
                )
                return INTERRUPTED
            failed = repeated
        return record_failure(spec, store, failed, data_root)


def register_methods(targets: Sequence[str]) -> None:
    """Registers user scoring functions (``file.py:func`` / ``pkg.module:func``) here."""
    if targets:
        from earlyprune.methods.user import register_target

        for target in targets:
            register_target(target)


def record_failure(
    spec: RunSpec, store: RunStore, exc: BaseException, data_root: str | None
) -> str:
    """Stores a ``failed`` result for ``spec`` unless a result is there or a live worker has it."""
    from earlyprune.run.record import failure
    from earlyprune.run.stages import prepare

    rid = spec.run_id
    try:
        with store.claim(rid, wait=False):
            stored = store.read_result(rid)
            if stored is not None and stored["status"] != "failed":
                return str(stored["status"])
            try:
                record = failure(prepare(spec, data_root), exc, 0.0)
            except Exception:  # the failure was in preparing the run itself
                record = {
                    "run_id": rid,
                    "spec": spec.to_dict(),
                    "status": "failed",
                    "error": f"{type(exc).__name__}: {exc}",
                    "test_accuracy": None,
                    "best_test_accuracy": None,
                    "numerics_version": NUMERICS_VERSION,
                    "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
            store.write_json(rid, "result.json", record)
    except ClaimBusy:
        return BUSY
    return "failed"


def dense_first(specs: list[RunSpec]) -> list[RunSpec]:
    """Dense runs (the prerequisites) first; otherwise the given order."""
    return sorted(specs, key=lambda s: s.method != DENSE)


def drive(
    specs: list[RunSpec], submit: Submit, on_done: Callable[[RunSpec], None]
) -> dict[str, BaseException]:
    """Hands every spec to ``submit``: dense runs first, a dependant once its dense run is over.

    A spec found ``BUSY`` is handed out again, this time waiting for the claim. Returns the
    executor's own errors (a worker process that died, a lost Ray task) by run id; such specs
    may be unfinished and are left to the caller.
    """
    pending = {s.run_id for s in specs}
    blocked: dict[str, list[RunSpec]] = {}
    ready: list[RunSpec] = []
    waits_for: dict[str, set[str]] = {}  # run id → its prerequisites still pending
    for spec in dense_first(specs):
        waits_for[spec.run_id] = {p.run_id for p in prerequisites(spec)} & pending
        for pre in waits_for[spec.run_id]:
            blocked.setdefault(pre, []).append(spec)
        if not waits_for[spec.run_id]:
            ready.append(spec)
    running: dict[Future[str], RunSpec] = {}
    errors: dict[str, BaseException] = {}

    def release(spec: RunSpec) -> None:
        for dependant in blocked.pop(spec.run_id, []):
            waits_for[dependant.run_id].discard(spec.run_id)
            if not waits_for[dependant.run_id]:  # its last pending prerequisite is over
                launch(dependant, False)

    def launch(spec: RunSpec, wait_claim: bool) -> None:
        try:
            running[submit(spec, wait_claim)] = spec
        except Exception as exc:  # e.g. the pool broke: this spec and its dependants are left
            errors[spec.run_id] = exc
            release(spec)

    for spec in ready:
        launch(spec, False)
    while running:
        done, _ = wait(list(running), return_when=FIRST_COMPLETED)
        for future in done:
            spec = running.pop(future)
            try:
                outcome = future.result()
            except StoreError:  # the store itself failed (disk full...): stop, don't go on
                raise
            except Exception as exc:
                errors[spec.run_id], outcome = exc, None
            if outcome == BUSY:
                launch(spec, True)
                continue
            if outcome is not None:
                on_done(spec)
            # Released even if the dense run failed: the dependant then records why it failed.
            release(spec)
    return errors


def tidy(store: RunStore, run_ids: list[str]) -> None:
    """Removes what killed writers left behind: temporary files, broken or dead claims, and the
    resume checkpoint (``latest.pt``) of a run that finished before its cleanup.

    Only under the run's claim: every writer of a run folder holds it, so none is mid-write
    (taking the claim breaks a dead worker's claim).
    """
    for rid in run_ids:
        folder = store.run_dir(rid)
        if not folder.is_dir():
            continue
        litter = [*folder.glob(".*.tmp"), *folder.glob(".claim.broken.*")]
        finished = (folder / "result.json").exists()
        if finished and (folder / "latest.pt").exists():
            litter.append(folder / "latest.pt")
        if not litter and store.claim_state(rid) != "stale":
            continue
        with contextlib.suppress(ClaimBusy), store.claim(rid, wait=False):
            for path in litter:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()


def parent_watchdog(sweep_pid: int, poll_s: float = 0.5) -> None:
    """Ends this worker process soon after the sweep process dies (e.g. it got SIGKILL).

    Without it a worker of a killed sweep would wait for tasks forever: under "forkserver" its
    parent is the fork server, which itself lives as long as any worker does, so the sweep's own
    pid is what is watched (a zombie counts as dead). The claims the worker held name a dead
    pid, so the next sweep on this host takes them over at once and resumes the runs.
    """

    def watch() -> None:
        while pid_alive(sweep_pid):
            time.sleep(poll_s)
        os._exit(3)

    threading.Thread(target=watch, name="earlyprune-watchdog", daemon=True).start()


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def as_args(store: RunStore, data_root: str | None) -> tuple[str, str | None]:
    """Absolute paths, so that workers (and Ray tasks with another working folder) agree."""
    root = str(store.root.resolve())
    return root, (str(os.path.abspath(data_root)) if data_root else None)


def with_prerequisites(specs: list[RunSpec]) -> list[RunSpec]:
    """Distinct specs plus their prerequisites (transitively: IMP levels chain); dense runs
    first, else in order."""
    found = {s.run_id: s for s in specs}
    frontier = list(found.values())
    while frontier:
        pres = [p for s in frontier for p in prerequisites(s)]
        frontier = list({p.run_id: p for p in pres if p.run_id not in found}.values())
        found.update({p.run_id: p for p in frontier})
    unique = list(found.values())
    return sorted(unique, key=lambda s: s.method != DENSE)


def check_specs(specs: list[RunSpec], data_root: str | None, *, need_data: bool) -> None:
    """``stages.prepare`` once per distinct setting: data present, prune step within training."""
    from earlyprune.run.stages import prepare

    seen = set()
    for spec in specs:
        key = (
            spec.model,  # a user network is checked on the data in prepare
            spec.dataset,
            spec.preset,
            spec.epochs,
            spec.method in REWINDING,
            spec.prune_step,
            spec.device,
            *(getattr(spec, h) for h in HPARAMS),  # batch size, milestones, rewind step...
        )
        if key in seen:
            continue
        seen.add(key)
        try:
            prepare(spec, data_root)
        except DatasetError:
            if need_data:
                raise
        except SpecError as exc:
            # A GPU kind's runs planned here for a cluster's nodes are computed there.
            if need_data or not isinstance(exc, WrongDevice):
                raise SpecError(f"run {spec.run_id} ({describe_spec(spec)}): {exc}") from None
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            # The machine's memory, not a mistake: each run meets it and counts it (run.memory).


def describe_spec(spec: RunSpec) -> str:
    step = f"  step={spec.prune_step}" if spec.prune_step is not None else ""
    return (
        f"{spec.model}/{spec.dataset}  {spec.method:<24}  s={100 * spec.sparsity:5.1f}%  "
        f"ablation={spec.ablation:<11}{step}  seed={spec.seed}{describe_hparams(spec)}"
    )
