"""Executors: how a sweep's pending runs get run. One registry, one fixed signature.

An executor is ``f(specs, store, *, workers, data_root, retry_failed, progress, methods)``: it
runs every spec in ``specs`` (all pending, prerequisites included) so that each ends with a
stored result, running a dense prerequisite before the runs that need it
(``base.drive`` does the ordering), calling ``progress.done(spec)`` as each one finishes. ``methods`` are user scoring functions
(``file.py:func`` or ``pkg.module:func``) to register in every worker before it runs anything —
a worker process starts with the built-in registry only. Register a new one with ``EXECUTORS.add(name, f)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from earlyprune.core.registry import Registry
from earlyprune.run.logs import SweepProgress
from earlyprune.run.spec import RunSpec
from earlyprune.run.store import RunStore
from earlyprune.sweeps.executors.local import run_local
from earlyprune.sweeps.executors.ray import run_ray
from earlyprune.sweeps.executors.slurm import SlurmExecutor


class Executor(Protocol):
    def __call__(
        self,
        specs: list[RunSpec],
        store: RunStore,
        *,
        workers: int | None,
        data_root: str | None,
        retry_failed: bool,
        progress: SweepProgress,
        methods: Sequence[str],
    ) -> None: ...


EXECUTORS: Registry[Executor] = Registry("executor")
EXECUTORS.add("local", run_local)
EXECUTORS.add("ray", run_ray)
EXECUTORS.add("slurm", SlurmExecutor())  # default options; the CLI builds its own

__all__ = ["EXECUTORS", "Executor"]
