"""`earlyprune run`: its flags come from the ``RunSpec`` fields (``earlyprune.run.settings``)."""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import TYPE_CHECKING, Any

from earlyprune.cli.parts import STALE_HELP, log_flags

if TYPE_CHECKING:
    from earlyprune.run.spec import RunSpec
    from earlyprune.train.distributed import Distributed


def add_run_flags(p: argparse.ArgumentParser) -> None:
    """The flags of `earlyprune run`: one per ``RunSpec`` field that is a flag, then the
    command's own (where results go, how it logs)."""
    from earlyprune.run.settings import add_flags
    from earlyprune.run.spec import RunSpec

    add_flags(p, RunSpec)
    p.add_argument("--store", default="runs", help="store folder (default: runs/)")
    p.add_argument(
        "--data-root",
        default=None,
        help="folder holding the dataset files (default: the dataset's own)",
    )
    p.add_argument("--retry-failed", action="store_true", help="run a failed run again")
    p.add_argument("--recompute-stale", action="store_true", help=STALE_HELP)
    log_flags(p)
    p.add_argument(
        "--tensorboard",
        metavar="DIR",
        default=None,
        help="also write TensorBoard event files, DIR/<run id> (needs tensorboard; default: none)",
    )


def spec_from_args(args: argparse.Namespace, job: Distributed | None) -> RunSpec:
    """The run the flags describe; the preset's network and the dataset's preset where unset."""
    from earlyprune.run.settings import from_args
    from earlyprune.run.spec import IMP, PRESETS, PresetWarning, RunSpec, default_preset

    preset_name = args.preset or default_preset(args.dataset)
    if preset_name is None:
        from earlyprune.data import list_datasets

        if args.dataset not in list_datasets():  # a typo: say so, rather than "pass --preset"
            raise ValueError(
                f"unknown dataset {args.dataset!r}; choose one of: {', '.join(list_datasets())}"
            )
        raise ValueError(
            f"no preset for dataset {args.dataset!r}: pass --preset "
            f"(one of: {', '.join(PRESETS.names())})"
        )
    preset = PRESETS.get(preset_name)
    warnings.simplefilter("ignore", PresetWarning)  # said by cmd_run, by the main process only
    fields: dict[str, Any] = from_args(args, RunSpec)
    fields.update(
        model=args.model or preset.model,
        preset=preset.name,
        sparsity=_run_sparsity(args, IMP),
        # Per-rank BatchNorm statistics make K processes compute other numbers than one.
        world_size=job.world_size if job is not None else 1,
    )
    return RunSpec(**fields)


def cmd_run(args: argparse.Namespace) -> int:
    """Trains, prunes and retrains one network, or serves it from the store."""
    from earlyprune.run.dist_store import DistStore
    from earlyprune.run.logs import Log
    from earlyprune.run.pipeline import check_stored, run, servable
    from earlyprune.run.spec import PRESETS
    from earlyprune.run.stages import prepare
    from earlyprune.run.store import RunStore
    from earlyprune.train.distributed import Distributed

    job = Distributed.from_env()  # launched by torchrun --nproc_per_node K
    spec = spec_from_args(args, job)
    store = RunStore(args.store) if job is None else DistStore(args.store, job)
    main = job is None or job.is_main
    preset = PRESETS.get(spec.preset)
    if args.preset and preset.dataset != args.dataset and main:  # allowed, never silently
        print(
            f"earlyprune: warning: preset {preset.name!r} was made for {preset.dataset}, "
            f"not {args.dataset}",
            file=sys.stderr,
        )
    if args.recompute_stale and main:
        from earlyprune.run.numerics import forget_stale
        from earlyprune.sweeps.executors.base import with_prerequisites

        # The run and what it reuses: its dense run, or for IMP every level below it.
        forget_stale(store, [s.run_id for s in with_prerequisites([spec])])
    stored = store.read_result(spec.run_id)
    if stored is not None and not (args.retry_failed and stored["status"] == "failed"):
        check_stored(stored, store)  # a result of older numerics: refused before any output
    log = Log(args.log_format, quiet=args.quiet, tensorboard=args.tensorboard) if main else None
    say = log.say if log is not None else (lambda *a, **k: None)
    if servable(stored, store, args.retry_failed):  # no data needed to serve a finished run
        say(
            summary_line(stored, stored=True),
            "result",
            stored=True,
            **{k: stored.get(k) for k in _RESULT_KEYS},
            spec=stored.get("spec"),
        )
        return 0 if stored["status"] in _OUTCOMES else 1
    prepare(spec, args.data_root, job)  # data and step checks first: one line on a mistake
    folder = store.run_dir(spec.run_id)
    say(f"run {spec.run_id} → {folder}", "start", run_id=spec.run_id, folder=str(folder))
    if job is not None:
        job.init()
    try:
        result = run(
            spec,
            store,
            data_root=args.data_root,
            job=job,
            log=log,
            progress=log.bars if log is not None else False,
            retry_failed=args.retry_failed,
        )
    finally:
        if job is not None:
            job.close()
    say(
        summary_line(result),
        "result",
        **{k: result.get(k) for k in _RESULT_KEYS},
        seconds=(result.get("timings") or {}).get("total_s"),
        spec=result.get("spec"),
    )
    return 0 if result["status"] in _OUTCOMES else 1


def _run_sparsity(args: argparse.Namespace, imp: str) -> float:
    if args.sparsity is None:
        if args.method == imp and args.levels is not None:
            return 0.0  # the spec derives it from the level
        raise ValueError(
            "--sparsity is required" + (" (or --levels)" if args.method == imp else "")
        )
    return args.sparsity


_RESULT_KEYS = ("run_id", "status", "error", "test_accuracy", "best_test_accuracy", "density")
#: Statuses of a run that trained to the end (disconnected: its mask cuts every input→output
#: path, trained only with --allow-disconnected or in a sweep; at chance accuracy).
_OUTCOMES = ("ok", "disconnected")


def summary_line(result: dict, *, stored: bool = False) -> str:
    """One line: id, method, sparsity, status, accuracy; "stored" when served from the store."""
    from earlyprune.analysis.verdicts import method_label

    spec = result["spec"]
    head = (
        f"{result['run_id']}  {spec['model']}/{spec['dataset']}  {method_label(spec)}"
        f"  s={100 * spec['sparsity']:.1f}%  ablation={spec['ablation']}  seed={spec['seed']}"
    )
    origin = "  stored" if stored else ""
    if result["status"] not in _OUTCOMES:
        return f"{head}  status={result['status']}{origin}  {result.get('error') or ''}".rstrip()
    cut = "  status=disconnected (no input→output path)" if result["status"] != "ok" else ""
    return (
        f"{head}{cut}  test accuracy {100 * result['test_accuracy']:.2f}%"
        f"  (density {100 * result['density']:.2f}%, {result['timings']['total_s']:.1f} s)"
        + (f"{origin}: served from the store, not recomputed" if stored else "")
    )
