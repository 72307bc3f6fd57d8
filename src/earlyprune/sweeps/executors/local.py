"""The ``local`` executor: a pool of worker processes on this machine.

Each run pins its own thread count (``spec.threads``); by default there are as many workers as
the cores hold such runs or, where CUDA is available and the runs' device is auto/cuda,
``workers_per_gpu`` per visible GPU (default: from the size of a training step, ``gpu_share``).
Worker ``i`` of G visible GPUs gets ``CUDA_VISIBLE_DEVICES`` = the ``i % G``-th of them, set
before it touches CUDA, so it sees that GPU as ``cuda:0``; its runs keep their spec (``device``
is not part of the run id).

Start method: "forkserver". "fork" copies a parent that may already have run multi-threaded
torch code or touched CUDA, and the child can then hang or fail to use the GPU (checked here: a
child forked after the parent ran a 2-thread matmul hung in its first matmul). "spawn" is safe
but imports torch again in every worker. The fork server is a clean interpreter that imports
torch and earlyprune once (preload); each worker is a fork of it. Measured on the loaded 2-core
dev machine, 2 workers: first result after 0.1 s (fork), 3.0 s (forkserver), 6.0 s (spawn);
then ≤ 1 ms per task. Like any forkserver/spawn pool, a script that calls a sweep needs the
``if __name__ == "__main__":`` guard (each worker imports the main script).

A worker process that dies (killed by the OS for memory, a crash in native code) breaks the
pool; the runs it was running are retried alone in a fresh pool, the others in another, and a
run that kills its worker again is recorded ``failed``.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from earlyprune.core.errors import SpecError
from earlyprune.core.processes import pid_alive
from earlyprune.core.warn import format_warning
from earlyprune.run.logs import SweepProgress
from earlyprune.run.spec import RunSpec
from earlyprune.run.store import RunStore
from earlyprune.sweeps.executors.base import (
    BUSY,
    as_args,
    dense_first,
    describe,
    drive,
    parent_watchdog,
    record_failure,
    register_methods,
    run_one,
)
from earlyprune.sweeps.executors.gpu_share import default_per_gpu

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
    progress: SweepProgress,
    methods: Sequence[str] = (),
    workers_per_gpu: int | None = None,
) -> None:
    """Runs ``specs`` (all pending) on this machine; ``workers=1`` runs them in this process.

    ``workers_per_gpu``: pool workers per visible GPU when the runs use CUDA (ignored without
    GPUs, where the cores decide; default: ``gpu_share.default_per_gpu``, from the size of the
    networks' steps); ``workers`` overrides the pool size.
    """
    if workers_per_gpu is None:  # not given: from the size of the networks' steps, on GPUs
        sized = workers is None and _on_gpus(specs) and _visible_gpus()
        workers_per_gpu = default_per_gpu(specs, data_root) if sized else 1
    n, gpus = pool_plan(specs, workers, workers_per_gpu)
    threads = 1  # between runs; a run sets its own
    root, data = as_args(store, data_root)
    with progress as bar:
        if n == 1:  # no pool: the simplest way to debug a run, and no start-up cost
            register_methods(methods)
            _in_process(specs, root, data, retry_failed, bar)
            return
        todo, errors = specs, {}
        for _ in range(MAX_POOLS):
            errors, finished = _pool_pass(
                todo, n, threads, gpus, root, data, retry_failed, bar, methods
            )
            todo, suspects = _triage(todo, errors, store)
            broken = [e for e in errors.values() if isinstance(e, BrokenProcessPool)]
            if broken and not finished and not suspects:
                raise SpecError(
                    f"the worker processes could not start ({describe(broken[0])}); "
                    'a script that runs a sweep needs `if __name__ == "__main__":`'
                )
            for spec in suspects:  # alone, so that a run that kills its worker is found out
                if _pool_pass([spec], 1, threads, gpus, root, data, retry_failed, bar, methods)[0]:
                    died = WorkerDied(
                        "the worker process running it died twice (out of memory? "
                        "a crash in native code?)"
                    )
                    record_failure(spec, store, died, data)
                    bar.done(spec)
            if not todo:
                return
        for spec in todo:
            record_failure(spec, store, errors.get(spec.run_id) or WorkerDied(), data)


def _in_process(
    specs: list[RunSpec], root: str, data: str | None, retry_failed: bool, bar: SweepProgress
) -> None:
    # Runs another sweep holds are left for last, to wait for them only once at the end.
    busy = []
    for spec in dense_first(specs):
        if run_one(spec, root, data, retry_failed, False) == BUSY:
            busy.append(spec)
        else:
            bar.done(spec)
    for spec in busy:
        run_one(spec, root, data, retry_failed, True)
        bar.done(spec)


def _pool_pass(
    specs: list[RunSpec],
    workers: int,
    threads: int,
    gpus: list[str],
    root: str,
    data: str | None,
    retry_failed: bool,
    bar: SweepProgress,
    methods: Sequence[str],
) -> tuple[dict[str, BaseException], int]:
    """One pool over ``specs``: the pool's own errors (a dead worker) by run id, runs finished."""
    ctx: Any = mp.get_context(START_METHOD)
    if START_METHOD == "forkserver":
        ctx.set_forkserver_preload(["earlyprune.sweeps.executors.base", "earlyprune.run.pipeline"])
    slots = ctx.SimpleQueue()
    for slot in range(workers):
        slots.put(slot)
    pool = ProcessPoolExecutor(
        workers,
        mp_context=ctx,
        initializer=_init_worker,
        initargs=(slots, threads, gpus, os.getpid(), tuple(methods)),
    )
    finished = []

    def on_done(spec: RunSpec) -> None:
        finished.append(1)
        bar.done(spec)

    try:
        errors = drive(
            specs,
            lambda spec, wait: pool.submit(_task, spec, root, data, retry_failed, wait),
            on_done,
        )
    except BaseException:
        # Ctrl-C or a bug here: stop the workers now (their runs resume from checkpoints).
        _kill(pool)
        raise
    pool.shutdown(wait=True)
    return errors, len(finished)


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


_sweep_pid = 0  # in a worker: the sweep process it works for


def _task(spec: RunSpec, root: str, data: str | None, retry_failed: bool, wait: bool) -> str:
    if not pid_alive(_sweep_pid):  # a task queued before the sweep was killed: drop it
        os._exit(3)
    return run_one(spec, root, data, retry_failed, wait)


def _init_worker(
    slots: Any, threads: int, gpus: list[str], sweep_pid: int, methods: tuple[str, ...]
) -> None:
    global _sweep_pid
    _sweep_pid = sweep_pid
    slot = slots.get()
    if gpus:  # before anything touches CUDA in this process (``gpus``: one per slot)
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
    # Ctrl-C belongs to the sweep process, which stops its workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import torch

    torch.set_num_threads(threads)
    register_methods(methods)
    warnings.formatwarning = format_warning  # one line each, as in the sweep's own process
    parent_watchdog(sweep_pid)


def _kill(pool: ProcessPoolExecutor) -> None:
    # concurrent.futures has no public way to stop running tasks before Python 3.14.
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        with contextlib.suppress(Exception):
            proc.kill()
    pool.shutdown(wait=False, cancel_futures=True)


def pool_plan(
    specs: Sequence[RunSpec], workers: int | None, workers_per_gpu: int = 1
) -> tuple[int, list[str]]:
    """The pool size and, per worker slot, the GPU it sees (``[]``: no GPU pinning).

    With G visible GPUs and runs on auto/cuda of a GPU kind, slot ``i`` gets the ``i % G``-th
    GPU, so ``G * workers_per_gpu`` workers share the GPUs evenly.
    """
    gpus = _visible_gpus() if _on_gpus(specs) else []
    # Every run pins its own thread count (``spec.threads``, in ``pipeline.run``), so the numbers
    # never depend on the pool: by default as many workers as the cores hold runs.
    wanted = workers or len(gpus) * workers_per_gpu
    wanted = wanted or max(1, cores() // max(s.threads for s in specs))
    n = max(1, min(wanted, len(specs)))
    return n, [gpus[slot % len(gpus)] for slot in range(n)] if gpus else []


def _on_gpus(specs: Sequence[RunSpec]) -> bool:
    """Whether the runs go to the visible GPUs: on auto/cuda and of a GPU kind (runs planned as
    CPU runs stay on the CPU; ``cuda:N`` runs choose their own)."""
    return all(s.device in ("auto", "cuda") and s.device_kind != "cpu" for s in specs)


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
