"""`earlyprune sweep plan|run|status FILE`: the command-line face of :mod:`earlyprune.sweeps.grid`."""

from __future__ import annotations

import argparse
import dataclasses

from earlyprune.cli.slurm_flags import backend_of
from earlyprune.run.logs import Log
from earlyprune.run.spec import RunSpec
from earlyprune.run.store import RunStore
from earlyprune.sweeps.executors import slurm_jobs
from earlyprune.sweeps.executors.base import describe_spec
from earlyprune.sweeps.executors.fused import fused_specs
from earlyprune.sweeps.grid import load_sweep, run_specs, run_state, sweep_status


def cli_sweep(args: argparse.Namespace) -> int:
    """``earlyprune sweep plan|run|status FILE``; exit 1 if a run of the sweep failed."""
    sweep = load_sweep(args.file)
    # Fused runs have their own ids: plan and status must look for those.
    sweep = dataclasses.replace(sweep, specs=fused_specs(sweep.specs, args.fuse))
    backend = backend_of(args) if args.action == "run" else args.backend  # checked: 1 line
    # plan and status only look: they never set a damaged file aside (read-only).
    store = RunStore(args.store or sweep.store or "runs", read_only=args.action != "run")
    log = Log(args.log_format, quiet=args.quiet)
    if args.action == "plan":
        for spec in sweep.specs:
            state = run_state(spec, store)
            log.say(
                plan_line(spec, state), "plan", run_id=spec.run_id, state=state, spec=spec.to_dict()
            )
    elif args.action == "run":
        run_specs(
            sweep.specs,
            store,
            workers=args.workers,
            backend=backend,
            data_root=args.data_root,
            retry_failed=args.retry_failed,
            recompute_stale=args.recompute_stale,
            log=log,
            progress=log.bars,
            fuse=args.fuse,
            workers_per_gpu=args.workers_per_gpu,
        )
    counts = sweep_status(sweep.specs, store)
    if args.action != "plan":
        for spec in sweep.specs:
            result = store.read_result(spec.run_id)
            if result is not None and result["status"] == "failed":
                log.say(
                    f"failed: {spec.run_id}  {describe_spec(spec)}  {result.get('error')}",
                    "failed",
                    run_id=spec.run_id,
                    error=result.get("error"),
                )
    log.say(
        status_line(counts, len(sweep.specs), sweep.skipped, store),
        "status",
        runs=len(sweep.specs),
        skipped=sweep.skipped,
        store=str(store.root),
        **counts,
    )
    if args.action == "status":
        for line in slurm_jobs.status_lines(store.root):  # jobs of `--backend slurm` runs
            log.say(line, "slurm")
    unfinished = counts["failed"] or counts["damaged"] or counts["pending"]
    detached = args.backend == "slurm" and args.detach  # the jobs go on: not a failure
    return 1 if unfinished and args.action == "run" and not detached else 0


def plan_line(spec: RunSpec, state: str) -> str:
    """One line of ``sweep plan``: run id, what it is, and its state."""
    return f"{spec.run_id}  {describe_spec(spec)}  {state}"


def status_line(counts: dict[str, int], total: int, skipped: int, store: RunStore) -> str:
    skip = f" ({skipped} combinations skipped: dense with sparsity or ablation)" if skipped else ""
    return (
        f"{total} runs{skip} in {store.root}: {counts['done']} done ({counts['ok']} ok, "
        # A mask that cuts every input→output path: trained to chance, an outcome, not a failure.
        + (f"{counts['disconnected']} disconnected, " if counts.get("disconnected") else "")
        + f"{counts['diverged']} diverged), {counts['failed']} failed, "
        + (f"{counts['damaged']} damaged (see `earlyprune verify`), " if counts["damaged"] else "")
        + f"{counts['running']} running, {counts['pending']} pending"
    )
