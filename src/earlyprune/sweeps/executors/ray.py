"""The ``ray`` executor: the same runs as Ray tasks, so one sweep scales to a Ray cluster.

``ray.init()`` connects to the cluster named by ``RAY_ADDRESS`` (Slurm, Kubernetes, cloud) or
starts a local instance; a Ray session that is already initialized is used as it is. Every task
asks for the cores its run pins (``spec.threads``; at least ``CPUs // workers`` if ``workers``
is given) and, where the cluster has GPUs and the run's device is not ``cpu``, ``1 /
workers_per_gpu`` of a GPU (fractional GPUs: several runs share one). The store (and the data)
must be on a file system every node sees: tasks coordinate through the store's claims exactly as
local workers do.

GPU rule: Ray picks the GPU and makes only that one visible to the task
(``CUDA_VISIBLE_DEVICES``), where it is ``cuda:0``. So a run with ``device="cuda:N"`` asks Ray
for a GPU like ``cuda`` does and runs on the one Ray assigns, as ``cuda:0`` inside the task; the
index N cannot choose a card under Ray. ``device`` is not part of the run id, so the id is the
same.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from typing import Any

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
    workers_per_gpu: int = 1,
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
        # Ray retries a task whose worker process died (max_retries); a run that raises is
        # recorded failed inside the task, so exceptions are not retried.
        task = ray.remote(max_retries=2)(_task)
        root, data = as_args(store, data_root)
        # All checked before any task starts: a mistake stops the sweep, nothing is stored.
        options = {s.run_id: task_options(s, cpus, gpus, workers, workers_per_gpu) for s in specs}
        errors = drive(
            specs,
            lambda spec, wait: (
                task.options(**options[spec.run_id])
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


def task_options(
    spec: RunSpec, cpus: int, gpus: int, workers: int | None, workers_per_gpu: int = 1
) -> dict[str, Any]:
    """Ray resources for ``spec``'s task on a cluster with ``cpus`` CPUs and ``gpus`` GPUs.

    Raises:
        SpecError: A GPU run on a cluster without GPUs (it would wait forever).
    """
    # A task reserves the cores its run pins (``spec.threads``), or a share if fewer workers
    # were asked for; the run's numbers depend only on ``spec.threads``.
    share = max(1, cpus // workers) if workers else 1
    on_cuda = spec.device_kind != "cpu" and gpus > 0  # planned as a CPU run: it holds no GPU
    if spec.device_kind != "cpu" and not gpus:
        raise SpecError(
            f"device {spec.device!r} of kind {spec.device_kind}, but the Ray cluster has no GPU"
        )
    return {
        "num_cpus": max(share, spec.threads),
        "num_gpus": 1 / workers_per_gpu if on_cuda else 0,
    }


def on_assigned_gpu(spec: RunSpec, visible: str | None) -> RunSpec:
    """``spec`` with ``cuda:N`` mapped to ``cuda:0``, the one GPU Ray made visible (``visible``
    = ``CUDA_VISIBLE_DEVICES`` in the task); unchanged otherwise."""
    if not spec.device.startswith("cuda:") or not visible:
        return spec
    mapped = copy.copy(spec)  # ``device`` is not in the run id: no new spec, same id
    object.__setattr__(mapped, "device", "cuda:0")
    return mapped


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
    spec = on_assigned_gpu(spec, os.environ.get("CUDA_VISIBLE_DEVICES"))
    return run_one(spec, store_root, data_root, retry_failed, wait)
