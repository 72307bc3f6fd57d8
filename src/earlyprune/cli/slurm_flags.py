"""`--backend slurm` and its options, shared by `sweep run`, `demo` and `check-method`."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from earlyprune.core.errors import SpecError

if TYPE_CHECKING:
    from earlyprune.sweeps.executors import Executor

BACKEND_HELP = "local|ray|slurm (slurm: a job array through submitit; see the Slurm flags)"


def slurm_flags(p: argparse.ArgumentParser, *, backend: bool, detach: bool) -> None:
    """Adds the Slurm flags (and ``--backend`` where ``backend``) to a subcommand."""
    if backend:
        p.add_argument("--backend", default="local", help=BACKEND_HELP)
    g = p.add_argument_group("Slurm (--backend slurm)")
    g.add_argument("--partition", default=None, help="partition (default: the cluster's)")
    g.add_argument(
        "--time", type=int, default=None, metavar="MIN", help="minutes per job (default 240)"
    )
    g.add_argument("--cpus-per-task", type=int, default=None, help="default: the runs' threads")
    g.add_argument(
        "--gpus-per-task", type=int, default=None, help="default: 1 for device=cuda runs, else 0"
    )
    g.add_argument(
        "--mem", type=float, default=None, metavar="GB", help="default: 4 per core + 16 per GPU"
    )
    g.add_argument(
        "--array-parallelism", type=int, default=None, help="jobs at once (default: all)"
    )
    g.add_argument("--account", default=None)
    g.add_argument("--qos", default=None)
    g.add_argument(
        "--sbatch",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a further #SBATCH option, e.g. constraint=a100 (repeatable)",
    )
    if detach:
        g.add_argument(
            "--detach",
            action="store_true",
            help="return once submitted; `sweep status` shows the jobs",
        )


def backend_of(args: argparse.Namespace) -> str | Executor:
    """The backend to hand ``run_specs``: a name, or a checked ``SlurmExecutor`` (a bad setup
    is one line here, before any store is touched)."""
    if args.backend != "slurm":
        return str(args.backend)
    # Here, not at the top: `earlyprune --version` and `list` need not import the executors.
    from earlyprune.sweeps.executors.slurm import SlurmExecutor, SlurmOptions, check_setup

    for name in ("time", "cpus_per_task", "array_parallelism"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise SpecError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    for name in ("gpus_per_task", "mem"):
        value = getattr(args, name)
        if value is not None and value < 0:
            raise SpecError(f"--{name.replace('_', '-')} must not be negative, got {value}")
    options = SlurmOptions(
        partition=args.partition,
        time_min=args.time,
        cpus_per_task=args.cpus_per_task,
        gpus_per_task=args.gpus_per_task,
        mem_gb=args.mem,
        array_parallelism=args.array_parallelism,
        account=args.account,
        qos=args.qos,
        sbatch_lines=tuple(args.sbatch),
        detach=bool(getattr(args, "detach", False)),
    )
    check_setup(options)
    return SlurmExecutor(options)


def with_backend(args: argparse.Namespace) -> argparse.Namespace:
    """``args`` with ``backend`` made ready for the apps (``demo``, ``check-method``)."""
    return argparse.Namespace(**{**vars(args), "backend": backend_of(args)})
