"""What one Slurm job of a sweep runs: drain the sweep's pending runs from the shared store.

Every job of the array gets the whole list of runs and works through it in the local
executor's order (dense prerequisites first); the store's claims keep two jobs — or a job and
a local or Ray sweep on the same store — off the same run. A run another worker holds is
skipped and looked at again later: when its holder dies (a cancelled or preempted job), its
claim goes stale (a dead pid on the same node at once, a silent heartbeat from another node
after ``CLAIM_TTL_S``) and the next look resumes the run from its checkpoint.

On preemption or timeout submitit requeues the job (``Drain`` is ``Checkpointable``): nothing
has to be saved, since every run checkpoints itself in the store. This module needs submitit
(imported only where the ``slurm`` backend is used).
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from dataclasses import dataclass

import submitit

from earlyprune.run.spec import RunSpec
from earlyprune.run.store import RunStore
from earlyprune.sweeps.executors.base import (
    BUSY,
    dense_first,
    prerequisites,
    register_methods,
    run_one,
)

#: Seconds between looks at runs other workers hold.
POLL_S = 2.0


def finished(store: RunStore, spec: RunSpec, since: str, retry_failed: bool) -> bool:
    """A result is stored — for ``retry_failed``, a failed one counts only if made after
    ``since`` (the submission), so that each failed run is retried once, not once per job."""
    result = store.read_result(spec.run_id)
    if result is None:
        return False
    if retry_failed and result.get("status") == "failed":
        return str(result.get("created", "")) >= since
    return True


def stop_on_sigterm() -> threading.Event:
    """An event set when Slurm sends SIGTERM (``scancel``, preemption).

    submitit's own handler (kept: it is called too) ignores SIGTERM so that a preempted job can
    checkpoint and requeue; without this the job would go on starting runs until Slurm's
    SIGKILL (``KillWait`` seconds later). The run in flight goes on: it is killed, at worst, and
    resumes from its last epoch's checkpoint elsewhere.
    """
    stopping = threading.Event()
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum: int, frame: object) -> None:
        stopping.set()
        if callable(previous):
            previous(signum, frame)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)
    return stopping


@dataclass(frozen=True)
class Drain(submitit.helpers.Checkpointable):
    """The callable a Slurm job runs (pickled by submitit): ``Drain(...)()`` runs runs until
    every one of ``specs`` is finished, by this job or by another worker."""

    specs: tuple[RunSpec, ...]
    store_root: str
    data_root: str | None
    retry_failed: bool
    methods: tuple[str, ...]
    submitted: str  # UTC, as result.json's "created"

    def __call__(self) -> int:
        """Returns how many runs this job finished itself."""
        register_methods(self.methods)
        stopping = stop_on_sigterm()
        store = RunStore(self.store_root)
        ids = {s.run_id for s in self.specs}
        handled: set[str] = set()
        ran = 0
        while True:
            waiting, progressed = 0, False
            for spec in dense_first(list(self.specs)):
                rid = spec.run_id
                if rid in handled:
                    continue
                if finished(store, spec, self.submitted, self.retry_failed):
                    handled.add(rid)
                    continue
                if any(p.run_id in ids and p.run_id not in handled for p in prerequisites(spec)):
                    waiting += 1  # its dense run (or IMP level) first
                    continue
                if stopping.is_set():  # cancelled or preempted: start nothing more
                    return ran
                outcome = run_one(spec, self.store_root, self.data_root, self.retry_failed, False)
                if outcome == BUSY:
                    waiting += 1
                    continue
                # Done, failed, or interrupted by the environment (left resumable for the next
                # sweep): this job does not try it again.
                handled.add(rid)
                progressed, ran = True, ran + 1
                print(f"earlyprune: {rid}: {outcome}", file=sys.stderr, flush=True)
            if not waiting:
                return ran
            if not progressed:
                time.sleep(POLL_S)

    def checkpoint(self) -> submitit.helpers.DelayedSubmission:
        """submitit calls this on preemption or timeout: the requeued job starts afresh (the
        runs resume from the store's checkpoints)."""
        return submitit.helpers.DelayedSubmission(self)
