"""The ``ray`` executor: the same runs as Ray tasks, so one sweep scales to a Ray cluster.

``ray.init()`` connects to the cluster named by ``RAY_ADDRESS`` (Slurm, Kubernetes, cloud) or
starts a local instance; a Ray session that is already initialized is used as it is. Every task
asks for the cores its run pins (``spec.threads``; at least ``CPUs // workers`` if ``workers``
is given) and one GPU where the cluster has GPUs. The store (and the data) must be on a file system every node sees:
tasks coordinate through the store's claims exactly as local workers do.
"""

from __future__ import annotations

from collections.abc import Sequence

from earlyprune.core.errors import SpecError
from earlyprune.run.logs import SweepProgress
from earlyprune.run.spec import RunSpec
from earlyprune.run.store import RunStore
from earlyprune.sweeps.executors.base import (
    as_args,
    drive,
    record_failure,
    register_methods,
    run_one,
)


def run_ray(
    specs: list[RunSpec],
    store: RunStore,
    *,
    workers: int | None,
    data_root: str | None,
    retry_failed: bool,
    progress: SweepProgress,
    methods: Sequence[str] = (),
) -> None:
    """Runs ``specs`` (all pending) as Ray tasks, prerequisites first."""
    try:
        import ray
    except ImportError:
        raise SpecError("the 'ray' backend needs Ray: pip install 'earlyprune[ray]'") from None
    started = not ray.is_initialized()
    if started:
        ray.init(include_dashboard=False)
    try:
        resources = ray.cluster_resources()
        cpus = max(1, int(resources.get("CPU", 1)))
        gpus = int(resources.get("GPU", 0))
        if not all(s.device in ("auto", "cuda") for s in specs):
            gpus = 0  # runs pinned to the CPU (or to a GPU index) must not hold a Ray GPU
        # A task reserves the cores its run pins (``spec.threads``), or a share if fewer
        # workers were asked for; the run's numbers depend only on ``spec.threads``.
        share = max(1, cpus // workers) if workers else 1
        # Ray retries a task whose worker process died (max_retries); a run that raises is
        # recorded failed inside the task, so exceptions are not retried.
        task = ray.remote(num_gpus=1 if gpus else 0, max_retries=2)(_task)
        root, data = as_args(store, data_root)
        errors = drive(
            specs,
            lambda spec, wait: (
                task.options(num_cpus=max(share, spec.threads))
                .remote(spec, root, data, retry_failed, wait, spec.threads, tuple(methods))
                .future()
            ),
            progress.done,
        )
        for spec in specs:
            if spec.run_id in errors and store.read_result(spec.run_id) is None:
                record_failure(spec, store, errors[spec.run_id], data)
    finally:
        if started:
            ray.shutdown()


def _task(
    spec: RunSpec,
    store_root: str,
    data_root: str | None,
    retry_failed: bool,
    wait: bool,
    threads: int,
    methods: tuple[str, ...],
) -> str:
    import torch

    torch.set_num_threads(threads)
    register_methods(methods)
    return run_one(spec, store_root, data_root, retry_failed, wait)
