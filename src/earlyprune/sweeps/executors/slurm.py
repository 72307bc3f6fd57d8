"""The ``slurm`` executor: a job array of workers, each draining the sweep's runs (submitit).

Every job of the array runs ``slurm_worker.Drain``: the store (on a file system the nodes
share) is the only coordination, through the claims every executor uses, so a local or Ray
sweep may work on the same store at once, and a job that is cancelled, preempted or dies leaves
claims that expire and runs that resume from their checkpoints in another job. submitit
requeues a preempted or timed-out job.

``SlurmExecutor(options)`` has the executors' signature; ``EXECUTORS["slurm"]`` is one with the
defaults. By default the submitting process waits, showing finished runs and the jobs' states;
``detach`` returns once the array is submitted (``earlyprune sweep status`` shows the jobs).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from earlyprune.core.errors import SpecError
from earlyprune.run.device_kinds import PLAN_ELSEWHERE
from earlyprune.run.logs import SweepProgress
from earlyprune.run.spec import RunSpec
from earlyprune.run.store import RunStore
from earlyprune.sweeps.executors import slurm_jobs
from earlyprune.sweeps.executors.base import as_args

#: File systems that every node of a cluster may see (others are local to one machine).
SHARED_FS = {"nfs", "nfs4", "lustre", "gpfs", "beegfs", "cephfs", "ceph", "fuse.glusterfs"}
SHARED_FS |= {"fuse.sshfs", "cifs", "smb3", "panfs", "wekafs", "fuse.juicefs", "9p", "virtiofs"}
#: Jobs in the array when ``workers`` is not given (never more than the runs).
DEFAULT_JOBS = 16


@dataclass(frozen=True)
class SlurmOptions:
    """What each job of the array asks Slurm for; None = the default said here.

    Attributes:
        partition: Slurm partition (default: the cluster's default partition).
        time_min: Time limit of each job in minutes (default 240); a job that reaches it is
            requeued and its runs resume from their checkpoints.
        cpus_per_task: Cores per job (default: the most threads a run pins, ``spec.threads``).
        gpus_per_task: GPUs per job (default: 1 where the runs are of a GPU's device kind,
            else 0; GPUs for runs planned as CPU runs are refused).
        mem_gb: Memory per job in GB (default: 4 per core, plus 16 per GPU).
        array_parallelism: Jobs of the array running at once (default: all).
        account: Slurm account to charge (``--account``).
        qos: Quality of service (``--qos``).
        sbatch_lines: Further ``#SBATCH`` options, each ``name=value`` or ``--name=value``.
        detach: Return once submitted instead of waiting for the runs.
        poll_s: Seconds between looks at the store and the queue while waiting.
    """

    partition: str | None = None
    time_min: int | None = None
    cpus_per_task: int | None = None
    gpus_per_task: int | None = None
    mem_gb: float | None = None
    array_parallelism: int | None = None
    account: str | None = None
    qos: str | None = None
    sbatch_lines: tuple[str, ...] = ()
    detach: bool = False
    poll_s: float = 5.0


def check_setup(options: SlurmOptions) -> None:
    """One-line ``SpecError`` where Slurm cannot take the sweep: submitit missing, no Slurm
    answering, an unknown partition. Writes nothing."""
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise SpecError("--backend slurm needs submitit: pip install 'earlyprune[slurm]'") from None
    found = slurm_jobs.partitions()
    if options.partition is not None and options.partition not in found:
        raise SpecError(
            f"--partition: unknown Slurm partition {options.partition!r}; "
            f"this cluster has: {', '.join(sorted(found)) or 'none'}"
        )
    for line in options.sbatch_lines:
        sbatch_option(line)


def sbatch_option(line: str) -> tuple[str, str]:
    """``"--constraint=a100"`` or ``"constraint=a100"`` → ``("constraint", "a100")``."""
    name, eq, value = line.strip().removeprefix("#SBATCH").strip().lstrip("-").partition("=")
    if not name or not eq:
        raise SpecError(f"--sbatch: expected NAME=VALUE (e.g. constraint=a100), got {line!r}")
    return name.replace("-", "_"), value


def job_parameters(options: SlurmOptions, specs: list[RunSpec], jobs: int) -> dict[str, object]:
    """submitit's parameters for the array, defaults filled in from the runs."""
    cpus = options.cpus_per_task or max(s.threads for s in specs)
    wants_gpu = any(s.device_kind != "cpu" for s in specs)
    gpus = options.gpus_per_task if options.gpus_per_task is not None else int(wants_gpu)
    if gpus and not wants_gpu and any(s.device == "auto" for s in specs):
        raise SpecError(
            f"--gpus-per-task {gpus} gives the jobs GPUs, but these runs were planned as CPU runs "
            "(their ids hold device kind cpu: this machine has no GPU), so they would compute on "
            f"the CPUs; to run them on the GPUs, {PLAN_ELSEWHERE}"
        )
    mem = options.mem_gb if options.mem_gb is not None else 4 * cpus + 16 * gpus
    params: dict[str, object] = {
        "job_name": "earlyprune",
        "time": options.time_min or 240,
        "cpus_per_task": cpus,
        "mem": f"{int(mem * 1024)}M",
        "array_parallelism": options.array_parallelism or jobs,
        # Claims and checkpoints hold the state: a preempted job is requeued and starts over.
        "additional_parameters": {
            "requeue": True,
            **dict(map(sbatch_option, options.sbatch_lines)),
        },
    }
    if gpus:
        params["gpus_per_task"] = gpus
    for name in ("partition", "account", "qos"):
        if getattr(options, name) is not None:
            params[name] = getattr(options, name)
    return params


class SlurmExecutor:
    """An executor (see ``earlyprune.sweeps.executors``) that submits a Slurm job array."""

    def __init__(self, options: SlurmOptions | None = None) -> None:
        self.options = options or SlurmOptions()

    def __call__(
        self,
        specs: list[RunSpec],
        store: RunStore,
        *,
        workers: int | None,
        data_root: str | None,
        retry_failed: bool,
        progress: SweepProgress,
        methods: Sequence[str] = (),
    ) -> None:
        """Submits ``workers`` jobs (default: one per run, at most 16) and waits for the runs
        unless ``options.detach``."""
        import submitit

        from earlyprune.sweeps.executors.slurm_worker import Drain

        check_setup(self.options)
        root, data = as_args(store, data_root)
        warn_if_not_shared(Path(root), self.options.partition)
        jobs = max(1, min(workers or DEFAULT_JOBS, len(specs)))
        submitted = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        drain = Drain(tuple(specs), root, data, retry_failed, tuple(methods), submitted)
        executor = submitit.SlurmExecutor(folder=slurm_jobs.slurm_folder(Path(root)) / "logs")
        executor.update_parameters(**job_parameters(self.options, specs, jobs))
        with executor.batch():
            submitted_jobs = [executor.submit(drain) for _ in range(jobs)]
        # The array's tasks are <id>_<i>; the array id names them all (squeue, scancel).
        array_id = str(submitted_jobs[0].job_id).split("_")[0]
        progress_note(f"slurm: submitted job array {array_id} ({jobs} jobs, {len(specs)} runs)")
        slurm_jobs.record_submission(Path(root), array_id, len(specs))
        if self.options.detach:
            progress_note(
                f"slurm: follow with `earlyprune sweep status FILE`, cancel with `scancel {array_id}`"
            )
            return
        follow(array_id, specs, store, progress, submitted, retry_failed, self.options.poll_s)


def follow(
    array_id: str,
    specs: list[RunSpec],
    store: RunStore,
    progress: SweepProgress,
    submitted: str,
    retry_failed: bool,
    poll_s: float,
) -> None:
    """Waits until every run is finished or no job of the array is left, showing both."""
    from earlyprune.sweeps.executors.slurm_worker import finished

    seen: set[str] = set()
    shown = ""
    try:
        while True:
            for spec in specs:
                if spec.run_id not in seen and finished(store, spec, submitted, retry_failed):
                    seen.add(spec.run_id)
                    progress.done(spec)
            if len(seen) == len(specs):
                return
            states = slurm_jobs.active_states(array_id)
            if not states:
                break
            line = slurm_jobs.count_line(states)
            if line != shown:
                progress_note(f"slurm: job {array_id}: {line}")
                shown = line
            time.sleep(poll_s)
    except KeyboardInterrupt:
        progress_note(f"slurm: the jobs go on; cancel them with `scancel {array_id}`")
        raise
    progress_note(
        f"slurm: the jobs of {array_id} ended with {len(specs) - len(seen)} runs unfinished "
        f"(cancelled? logs in {slurm_jobs.slurm_folder(store.root)}/logs); "
        "run the same command again to resume them"
    )


def progress_note(line: str) -> None:
    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr)


def warn_if_not_shared(root: Path, partition: str | None) -> None:
    """A warning (one line) where jobs may run on other nodes and the store is on a file
    system only this machine sees: their runs would be lost to this store."""
    nodes = {n for part, ns in slurm_jobs.partitions().items() for n in ns if part == partition}
    if partition is None:
        default = slurm_jobs.default_partition()
        nodes = set(slurm_jobs.partitions().get(default or "", []))
    here = os.uname().nodename.split(".")[0]
    if nodes <= {here}:
        return
    fs = file_system(root)
    if fs not in SHARED_FS:
        progress_note(
            f"earlyprune: warning: the store {root} is on a {fs} file system, which the "
            "partition's other nodes may not see; put it on a shared file system"
        )


def file_system(path: Path) -> str:
    """The type of the file system holding ``path`` (from /proc/mounts; "unknown" elsewhere)."""
    best, kind = "", "unknown"
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    target = str(path.resolve())
    for line in mounts:
        parts = line.split()
        if len(parts) >= 3 and (target + "/").startswith(parts[1].rstrip("/") + "/"):
            if len(parts[1]) >= len(best):
                best, kind = parts[1], parts[2]
    return kind
