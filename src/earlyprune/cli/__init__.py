"""The `earlyprune` command. User mistakes print one line and exit 2; no tracebacks."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from earlyprune.cli.parts import (
    LISTS,
    cmd_list,
    cmd_verify,
    log_flags,
    sparse_training_flags,
    version_text,
)
from earlyprune.cli.slurm_flags import BACKEND_HELP, slurm_flags, with_backend
from earlyprune.core.warn import one_line_warnings

EXIT_USER_ERROR = 2


class _ShowDefaults(argparse.HelpFormatter):
    """``--help`` names every option's default (options whose help does not say it already)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (
            action.option_strings
            and action.nargs != 0
            and "default" not in text
            and action.default not in (None, argparse.SUPPRESS)
        ):
            text += " (default: %(default)s)"
        return text


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake in one line (exit 2) instead of usage + error."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _ShowDefaults)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        print(f"earlyprune: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR)


def _sparsity(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"sparsity must be a number in [0, 1), got {text!r}"
        ) from None
    return value


_STALE_HELP = "redo runs stored by an older earlyprune (another numerics version)"


def build_parser() -> argparse.ArgumentParser:
    from earlyprune import __version__
    from earlyprune.run.hparams import add_flags

    parser = _Parser(prog="earlyprune", description=__doc__)
    parser.add_argument("--version", action="version", version=version_text(__version__))
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("run", help="train, prune and retrain one network (stored by run id)")
    p.add_argument(
        "--model",
        help="network name, FILE.py:FACTORY or pkg.module:FACTORY (default: the preset's network)",
    )
    p.add_argument(
        "--dataset",
        required=True,
        help="dataset name (see `earlyprune list`), npz:FILE.npz or FILE.py:LOADER",
    )
    p.add_argument(
        "--method",
        required=True,
        help="pruning method, 'dense', FILE.py:FUNC or pkg.module:FUNC (your scorer)",
    )
    p.add_argument(
        "--sparsity",
        type=_sparsity,
        default=None,
        help="fraction removed, [0, 1) (imp: follows from --levels)",
    )
    p.add_argument(
        "--levels",
        type=int,
        default=None,
        help="imp: pruning levels, each removing 20%% of the survivors",
    )
    p.add_argument(
        "--prune-step",
        type=int,
        default=None,
        help="prune after T training steps (default: 0; ltr/imp: the rewind step)",
    )
    p.add_argument("--ablation", default="none", help="none|shuffle|reinit|invert|init_normal")
    p.add_argument("--seed", type=int, default=0, help="replicate seed (init, data order, ...)")
    p.add_argument("--rounds", type=int, default=None, help="pruning rounds (default: method's)")
    p.add_argument("--scope", default="global", help="global|layer")
    p.add_argument(
        "--allocation", default=None, help="layer counts: erk|er|uniform|... or a scorer"
    )
    p.add_argument(
        "--placement", default=None, help="weights within a layer: random|magnitude|scorer"
    )
    p.add_argument("--store", default="runs", help="store folder (default: runs/)")
    p.add_argument("--preset", default=None, help="training preset (default: the dataset's)")
    p.add_argument(
        "--epochs",
        type=float,
        default=None,
        help="shorten/lengthen the preset; its LR drops move proportionally (default: preset)",
    )
    p.add_argument("--precision", default="fp32", help="fp32|bf16")
    p.add_argument("--device", default="auto", help="auto|cpu|cuda|cuda:N")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads the run pins (part of the run id when not 1)",
    )
    p.add_argument(
        "--data-root",
        default=None,
        help="folder holding the dataset files (default: the dataset's own)",
    )
    p.add_argument("--retry-failed", action="store_true", help="run a failed run again")
    p.add_argument(
        "--bias-init", default="default", help="default (PyTorch's, as the authors)|zero"
    )
    p.add_argument(
        "--allow-disconnected",
        action="store_true",
        help="train a mask even if it leaves no input→output path (stored with status "
        "'disconnected'; sweeps always do this)",
    )
    p.add_argument("--recompute-stale", action="store_true", help=_STALE_HELP)
    log_flags(p)
    p.add_argument(
        "--tensorboard",
        metavar="DIR",
        default=None,
        help="also write TensorBoard event files, DIR/<run id> (needs tensorboard; default: none)",
    )
    add_flags(p)
    sparse_training_flags(p)

    p = sub.add_parser("sweep", help="plan, run or check a grid of runs from a TOML file")
    p.add_argument("action", choices=["plan", "run", "status"])
    p.add_argument("file", help="sweep TOML file")
    p.add_argument("--store", default=None, help="store folder (default: the file's or runs/)")
    p.add_argument("--workers", type=int, default=None, help="parallel workers (default: auto)")
    p.add_argument("--backend", default="local", help=BACKEND_HELP)
    p.add_argument("--data-root", default=None)
    p.add_argument("--retry-failed", action="store_true", help="run failed runs again")
    p.add_argument("--recompute-stale", action="store_true", help=_STALE_HELP)
    log_flags(p)
    slurm_flags(p, backend=False, detach=True)

    p = sub.add_parser("report", help="tables, figures and index.html from a store")
    p.add_argument("store")
    p.add_argument("--out", default=None, help="report folder (default: STORE/report)")
    p.add_argument("--tolerance", type=float, default=0.005, help="matching tolerance (fraction)")
    p.add_argument("--free-y", action="store_true", help="own y-range per ablation panel")

    for name, text in (
        ("demo", "replicate the paper's findings offline in minutes"),
        ("check-method", "run the paper's sanity checks on your own scoring function"),
    ):
        p = sub.add_parser(name, help=text)
        if name == "check-method":
            p.add_argument("target", help="path/to/file.py:FUNC or package.module:FUNC")
            p.add_argument(
                "--model",
                default=None,
                help="your network (FILE.py:FACTORY) instead of the demo's smallcnn",
            )
            p.add_argument(
                "--dataset",
                default=None,
                help="your data (npz:FILE.npz, FILE.py:LOADER) instead of fashion-mnist-mini",
            )
            p.add_argument(
                "--timeout",
                type=float,
                default=120.0,
                help="seconds one call of your function may take (default 120)",
            )
            p.add_argument(
                "--debug",
                action="store_true",
                help="show the full traceback of an error in your code",
            )
            p.add_argument(
                "--sparsities",
                default=None,
                metavar="S,S,...",
                help="fractions removed, e.g. 0.9,0.97 (default: the demo's)",
            )
            p.add_argument(
                "--seeds",
                default=None,
                metavar="N,N,...",
                help="replicate seeds, e.g. 0,1,2,3,4 (default: the demo's)",
            )
        p.add_argument("--quick", action="store_true", help="a smaller grid (about a minute)")
        p.add_argument("--store", default=None, help="store folder (default: runs/demo)")
        p.add_argument("--out", default=None, help="report folder (default: report/)")
        p.add_argument("--workers", type=int, default=None)
        if name == "demo":
            p.add_argument(
                "--methods",
                default=None,
                help="'all' (every registered method) "
                "or NAME,NAME,... (default: the paper's methods)",
            )
        p.add_argument("--recompute-stale", action="store_true", help=_STALE_HELP)
        slurm_flags(p, backend=True, detach=False)

    p = sub.add_parser("list", help="models, datasets, methods, ablations and presets")
    p.add_argument(
        "what",
        nargs="?",
        choices=LISTS,
        help="one list only; `presets` shows every hyperparameter of each preset",
    )

    p = sub.add_parser("verify", help="find finished runs whose stored files are damaged")
    p.add_argument("store")
    p.add_argument("--repair", action="store_true", help="re-queue the damaged runs")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `earlyprune` console script."""
    args = build_parser().parse_args(argv)
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "run": _cmd_run,
        "sweep": _cmd_sweep,
        "report": _cmd_report,
        "demo": _cmd_demo,
        "check-method": _cmd_check_method,
        "list": cmd_list,
        "verify": cmd_verify,
    }
    try:
        with one_line_warnings():  # `earlyprune: warning: <run id> (<method>): …`, no source
            code = handlers[args.command](args)
        sys.stdout.flush()  # what is still buffered (`list | head -1`) meets a closed pipe here
        return code
    except ValueError as exc:  # every user mistake is a ValueError subclass with a clear message
        print(f"earlyprune: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("earlyprune: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as exc:
        from earlyprune.run.environment import (
            EXIT_OUTPUT_CLOSED,
            RunInterrupted,
            output_closed,
            silence_stdout,
        )

        if output_closed(exc):  # the reader went away: quietly, as SIGPIPE; the run resumes
            silence_stdout()
            return EXIT_OUTPUT_CLOSED
        if not isinstance(exc, RunInterrupted):
            raise
        print(f"earlyprune: {exc}; run the same command again to resume", file=sys.stderr)
        return 1


def _cmd_run(args: argparse.Namespace) -> int:
    from earlyprune.run.dist_store import DistStore
    from earlyprune.run.hparams import from_args
    from earlyprune.run.logs import Log
    from earlyprune.run.pipeline import check_stored, run, servable
    from earlyprune.run.spec import IMP, PRESETS, PresetWarning, RunSpec, default_preset
    from earlyprune.run.stages import prepare
    from earlyprune.run.store import RunStore
    from earlyprune.train.distributed import Distributed

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
    job = Distributed.from_env()  # launched by torchrun --nproc_per_node K
    warnings.simplefilter("ignore", PresetWarning)  # said below, by the main process only
    spec = RunSpec(
        dataset=args.dataset,
        model=args.model or preset.model,
        preset=preset.name,
        method=args.method,
        sparsity=_run_sparsity(args, IMP),
        prune_step=args.prune_step,
        levels=args.levels,
        rounds=args.rounds,
        scope=args.scope,
        ablation=args.ablation,
        seed=args.seed,
        epochs=args.epochs,
        precision=args.precision,
        device=args.device,
        allocation=args.allocation,
        placement=args.placement,
        bias_init=args.bias_init,
        allow_disconnected=args.allow_disconnected,
        drop_fraction=args.drop_fraction,
        update_interval=args.update_interval,
        update_start=args.update_start,
        update_end=args.update_end,
        initial_sparsity=args.initial_sparsity,
        **from_args(args),
        threads=args.threads,
        # Per-rank BatchNorm statistics make K processes compute other numbers than one.
        world_size=job.world_size if job is not None else 1,
    )
    store = RunStore(args.store) if job is None else DistStore(args.store, job)
    say = print if job is None or job.is_main else (lambda *a, **k: None)
    if args.preset and preset.dataset != args.dataset:
        say(
            f"earlyprune: warning: preset {preset.name!r} was made for {preset.dataset}, "
            f"not {args.dataset}",
            file=sys.stderr,
        )
    if args.recompute_stale and (job is None or job.is_main):
        from earlyprune.run.numerics import forget_stale
        from earlyprune.sweeps.executors.base import with_prerequisites

        # The run and what it reuses: its dense run, or for IMP every level below it.
        forget_stale(store, [s.run_id for s in with_prerequisites([spec])])
    stored = store.read_result(spec.run_id)
    if stored is not None and not (args.retry_failed and stored["status"] == "failed"):
        check_stored(stored, store)  # a result of older numerics: refused before any output
    main = job is None or job.is_main
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


def _cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from earlyprune.analysis import write_report

    out = Path(args.out) if args.out else Path(args.store) / "report"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        index = write_report(args.store, out, tolerance=args.tolerance, free_y=args.free_y)
    for w in caught:  # skipped result files and similar: one line each, no stack
        if issubclass(w.category, RuntimeWarning):
            print(f"earlyprune: warning: {w.message}", file=sys.stderr)
    print(f"report written: {index}")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from earlyprune.cli.sweep import cli_sweep

    return cli_sweep(args)


def _cmd_demo(args: argparse.Namespace) -> int:
    from earlyprune.apps.demo import cli_demo

    return cli_demo(with_backend(args))


def _cmd_check_method(args: argparse.Namespace) -> int:
    from earlyprune.apps.check_method import cli_check_method

    return cli_check_method(with_backend(args))


if __name__ == "__main__":
    raise SystemExit(main())
