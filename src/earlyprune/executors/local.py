"""The ``local`` executor: a pool of worker processes on this machine.

Each worker is pinned to a share of the cores (``torch.set_num_threads``) or, where CUDA is
available, to one GPU (``CUDA_VISIBLE_DEVICES``, round-robin over the visible GPUs).

Start method: "forkserver". "fork" copies a parent that may already have started OpenMP threads
or CUDA (the sweep loads the data to check the specs), and a forked child can then hang or fail
to use the GPU; "spawn" is safe but re-imports torch in every worker. The fork server is a clean
interpreter that imports torch and earlyprune once (preload); each worker is a fork of it.
Measured on the 2-core test machine: see ``benchmarks`` notes in the sweep tests' docstring.

A worker process that dies (killed by the OS for memory, a crash in native code) breaks the
pool; the runs it was running are retried alone in a fresh pool, the others in another, and a
run that kills its worker again is recorded ``failed``.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from tqdm import tqdm

from earlyprune.executors.base import (
    as_args,
    dense_first,
    drive,
    parent_watchdog,
    record_failure,
    run_one,
)
from earlyprune.spec import RunSpec
from earlyprune.store import RunStore

#: Process start method of the pool (see the module docstring for why).
START_METHOD = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
#: Fresh pools tried after worker deaths before the remaining runs are recorded failed.
MAX_POOLS = 3


class WorkerDied(RuntimeError):
    """The worker process running a run died without a result (out of memory? a crash?)."""


def run_local(
    specs: list[RunSpec],
    store: RunStore,
    *,
    workers: int | None,
    data_root: str | None,
    retry_failed: bool,
    progress: bool,
) -> None:
    """Runs ``specs`` (all pending) on this machine; ``workers=1`` runs them in this process."""
    gpus = _visible_gpus() if all(s.device in ("auto", "cuda") for s in specs) else []
    n = max(1, min(workers or (len(gpus) or cores()), len(specs)))
    root, data = as_args(store, data_root)
    bar = tqdm(total=len(specs), desc="sweep", unit="run", disable=not progress,
               dynamic_ncols=True)  # fmt: skip
    with bar:
        if n == 1:
            # No pool: the simplest way to debug a run, and no start-up cost for one run.
            for spec in dense_first(specs):
                run_one(spec, root, data, retry_failed, True)
                bar.update(1)
            return
        todo, errors = specs, {}
        for _ in range(MAX_POOLS):
            errors = _pool_pass(todo, n, gpus, root, data, retry_failed, bar)
            todo, suspects = _triage(todo, errors, store)
            for spec in suspects:  # alone, so that a run that kills its worker is found out
                if _pool_pass([spec], 1, gpus, root, data, retry_failed, bar):
                    record_failure(spec, store, WorkerDied("the worker process running it "
                                   "died twice (out of memory? a crash in native code?)"), data)  # fmt: skip
                    bar.update(1)
            if not todo:
                return
        for spec in todo:
            record_failure(spec, store, errors.get(spec.run_id) or WorkerDied(), data)


def _pool_pass(
    specs: list[RunSpec],
    workers: int,
    gpus: list[str],
    root: str,
    data: str | None,
    retry_failed: bool,
    bar: tqdm,
) -> dict[str, BaseException]:
    """One pool over ``specs``; returns the pool's own errors (a dead worker) by run id."""
    ctx: Any = mp.get_context(START_METHOD)
    if START_METHOD == "forkserver":
        ctx.set_forkserver_preload(["earlyprune.executors.base", "earlyprune.pipeline"])
    slots = ctx.SimpleQueue()
    for slot in range(workers):
        slots.put(slot)
    threads = max(1, cores() // workers)
    pool = ProcessPoolExecutor(
        workers,
        mp_context=ctx,
        initializer=_init_worker,
        initargs=(slots, threads, gpus, os.getpid()),
    )
    try:
        errors = drive(
            specs,
            lambda spec, wait: pool.submit(run_one, spec, root, data, retry_failed, wait),
            lambda: bar.update(1),
        )
    except BaseException:
        # Ctrl-C or a bug here: stop the workers now (their runs resume from checkpoints).
        _kill(pool)
        raise
    pool.shutdown(wait=True)
    return errors


def _triage(
    specs: list[RunSpec], errors: dict[str, BaseException], store: RunStore
) -> tuple[list[RunSpec], list[RunSpec]]:
    """Unfinished runs after a broken pool: (to retry together, to retry alone).

    A run whose claim names a dead process was running when its worker died: it may be the
    culprit, so it is retried alone.
    """
    retry, suspects = [], []
    for spec in specs:
        rid = spec.run_id
        if rid not in errors or store.read_result(rid) is not None:
            continue
        (suspects if store.claim_state(rid) == "stale" else retry).append(spec)
    return retry, suspects


def _init_worker(slots: Any, threads: int, gpus: list[str], sweep_pid: int) -> None:
    slot = slots.get()
    if gpus:  # before anything touches CUDA in this process
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
    # Ctrl-C belongs to the sweep process, which stops its workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import torch

    torch.set_num_threads(threads)
    parent_watchdog(sweep_pid)


def _kill(pool: ProcessPoolExecutor) -> None:
    # concurrent.futures has no public way to stop running tasks before Python 3.14.
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        with contextlib.suppress(Exception):
            proc.kill()
    pool.shutdown(wait=False, cancel_futures=True)


def _visible_gpus() -> list[str]:
    import torch

    if not torch.cuda.is_available():
        return []
    count = torch.cuda.device_count()
    listed = [g.strip() for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    return (listed or [str(i) for i in range(count)])[:count]


def cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
