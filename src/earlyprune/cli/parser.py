"""The parser of the `earlyprune` command (``run``'s flags: ``earlyprune.cli.run``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn

from earlyprune.cli.parts import (
    FUSE_HELP,
    LISTS,
    PER_GPU_HELP,
    STALE_HELP,
    log_flags,
    version_text,
)
from earlyprune.cli.run import add_run_flags
from earlyprune.cli.slurm_flags import BACKEND_HELP, slurm_flags

EXIT_USER_ERROR = 2
#: What `earlyprune --help` says first (the package's docstring, as before the split).
DESCRIPTION = "The `earlyprune` command. User mistakes print one line and exit 2; no tracebacks."


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


def build_parser() -> argparse.ArgumentParser:
    from earlyprune import __version__

    parser = _Parser(prog="earlyprune", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=version_text(__version__))
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("run", help="train, prune and retrain one network (stored by run id)")
    add_run_flags(p)

    p = sub.add_parser("sweep", help="plan, run or check a grid of runs from a TOML file")
    p.add_argument("action", choices=["plan", "run", "status"])
    p.add_argument("file", help="sweep TOML file")
    p.add_argument("--store", default=None, help="store folder (default: the file's or runs/)")
    p.add_argument("--workers", type=int, default=None, help="parallel workers (default: auto)")
    p.add_argument("--workers-per-gpu", type=int, default=None, metavar="N", help=PER_GPU_HELP)
    p.add_argument("--backend", default="local", help=BACKEND_HELP)
    p.add_argument("--data-root", default=None)
    p.add_argument("--retry-failed", action="store_true", help="run failed runs again")
    p.add_argument("--recompute-stale", action="store_true", help=STALE_HELP)
    p.add_argument("--fuse", type=int, default=None, metavar="K", help=FUSE_HELP)
    log_flags(p)
    slurm_flags(p, backend=False, detach=True)

    p = sub.add_parser("report", help="tables, figures and index.html from a store")
    p.add_argument("store")
    p.add_argument("--out", default=None, help="report folder (default: STORE/report)")
    p.add_argument("--tolerance", type=float, default=0.005, help="matching tolerance (fraction)")
    p.add_argument("--free-y", action="store_true", help="own y-range per ablation panel")

    _app_parsers(sub)

    p = sub.add_parser("speed", help="measure a run's network: dense vs its structure's kernel")
    p.add_argument("run", help="a run folder, or a run id in --store")
    p.add_argument("--store", default=None, help="store folder of a run id (default: runs/)")
    p.add_argument("--device", default="cpu", help="where to measure: cpu|cuda (default cpu)")
    p.add_argument("--batch-size", type=int, default=32, help="inputs per forward pass")
    p.add_argument("--repeats", type=int, default=10, help="timed passes per side (median)")

    p = sub.add_parser("list", help="models, datasets, methods, ablations, presets and devices")
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


def _app_parsers(sub: argparse._SubParsersAction) -> None:
    """`demo` and `check-method`: the paper's checks, on its methods or on the user's."""
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
        p.add_argument("--workers-per-gpu", type=int, default=None, metavar="N", help=PER_GPU_HELP)
        if name == "demo":
            p.add_argument(
                "--methods",
                default=None,
                help="'all' (every registered method) "
                "or NAME,NAME,... (default: the paper's methods)",
            )
        p.add_argument("--recompute-stale", action="store_true", help=STALE_HELP)
        p.add_argument("--fuse", type=int, default=None, metavar="K", help=FUSE_HELP)
        slurm_flags(p, backend=True, detach=False)
