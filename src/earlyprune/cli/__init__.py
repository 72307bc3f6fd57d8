"""The `earlyprune` command. User mistakes print one line and exit 2; no tracebacks."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence

from earlyprune.cli.parser import EXIT_USER_ERROR, build_parser
from earlyprune.cli.parts import cmd_list, cmd_verify
from earlyprune.cli.run import cmd_run, summary_line
from earlyprune.cli.slurm_flags import with_backend
from earlyprune.core.warn import one_line_warnings

__all__ = ["EXIT_USER_ERROR", "build_parser", "main", "summary_line"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `earlyprune` console script."""
    args = build_parser().parse_args(argv)
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "run": cmd_run,
        "sweep": _cmd_sweep,
        "report": _cmd_report,
        "demo": _cmd_demo,
        "check-method": _cmd_check_method,
        "list": cmd_list,
        "verify": cmd_verify,
        "speed": _cmd_speed,
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


def _cmd_speed(args: argparse.Namespace) -> int:
    from earlyprune.apps.speed_run import cli_speed

    return cli_speed(args)


if __name__ == "__main__":
    raise SystemExit(main())
