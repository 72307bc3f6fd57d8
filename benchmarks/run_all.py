"""Runs every benchmark, prints a summary table and refreshes BENCHMARKS.md.

Each benchmark runs in its own process (``python benchmarks/<name>.py``) and prints one JSON
object. The summary goes between the ``<!-- results -->`` markers of BENCHMARKS.md (the notes
around them are kept), stamped with device, date and commit. ``--json FILE`` also writes the
headline ratios (``masked_over_dense``, ``defaults_over_naive``, ``synflow_resnet20_s``,
``synflow_vgg16_s``, ``loader_over_train``) plus every benchmark's full output.

Usage: ``python benchmarks/run_all.py [--json FILE] [--quick|--tiny] [--full] [--device cpu|cuda]``.
The headline figures come from the default run, which times only the paper's methods on VGG-16
and measures only their memory on ResNet-50 (meant to take ≤ 10 minutes on 2 quiet CPU cores);
``--full`` also does both for every registered method (well past 25 minutes on 2 cores);
``--quick`` about a third of the default.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import base_parser, size_of
from report import headline, render, summary_rows, table_text

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
#: name → extra arguments per size (bench_loader has its own knobs instead of --quick/--tiny)
BENCHMARKS: dict[str, dict[str, list[str]]] = {
    "training": {"full": [], "quick": ["--quick"], "tiny": ["--tiny"]},
    "loader": {
        "full": [],
        "quick": ["--train-steps", "4", "--loader-epochs", "1"],
        "tiny": ["--train-steps", "2", "--loader-epochs", "1"],
    },
    "scoring": {"full": [], "quick": ["--quick"], "tiny": ["--tiny"]},
    "memory": {"full": [], "quick": ["--quick"], "tiny": ["--tiny"]},
    "precision": {"full": [], "quick": ["--quick"], "tiny": ["--tiny"]},
}


#: The paper's methods: the default memory sweep on ResNet-50 (GraSP, the worst, is among them);
#: every registered method only with ``--full`` (three child processes per method: ~10 minutes).
PAPER_METHODS = ["random", "magnitude", "snip", "grasp", "grasp_magnitude", "synflow"]


def _opt_in(name: str, size: str, full: bool) -> list[str]:
    """The extra arguments that keep the default run within ~10 minutes on 2 quiet cores."""
    if name == "scoring" and full:
        return ["--every-method"]
    if name == "memory" and size == "full" and not full:
        return ["--methods", *PAPER_METHODS]
    return []


def run_one(name: str, device: str, extra: list[str], timeout: float) -> dict[str, Any]:
    """Runs ``bench_<name>.py`` in a fresh process and returns its JSON (or the failure)."""
    cmd = [sys.executable, str(HERE / f"bench_{name}.py"), "--device", device, *extra]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    seconds = round(time.perf_counter() - start, 1)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1], "wall_s": seconds}
    result = json.loads(lines[-1])
    result["wall_s"] = seconds
    return result


def commit() -> str:
    """``git rev-parse HEAD`` (read-only), marked when the working tree has changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + (" + uncommitted changes" if dirty.strip() else "")


def write_markdown(path: Path, block: str) -> None:
    """Replaces the text between the results markers of ``path`` (creates the file if needed)."""
    begin, end = "<!-- results:begin -->", "<!-- results:end -->"
    text = path.read_text() if path.exists() else f"# Benchmarks\n\n{begin}\n{end}\n"
    if begin not in text or end not in text:
        text = text.rstrip() + f"\n\n{begin}\n{end}\n"
    head, rest = text.split(begin, 1)
    tail = rest.split(end, 1)[1]
    path.write_text(f"{head}{begin}\n{block.strip()}\n{end}{tail}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--json", metavar="FILE", help="also write the headline numbers here")
    parser.add_argument(
        "--md",
        metavar="FILE",
        default=str(ROOT / "BENCHMARKS.md"),
        help="markdown file to refresh (default: BENCHMARKS.md)",
    )
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run only these")
    parser.add_argument(
        "--full",
        action="store_true",
        help="also time every modern scorer on VGG-16 and measure every method's memory on "
        "ResNet-50 (opt-in: adds ~25 minutes on 2 cores)",
    )
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds per benchmark")
    args = parser.parse_args(argv)
    size = size_of(args)
    results: dict[str, Any] = {}
    for name, sizes in BENCHMARKS.items():
        if args.only and name not in args.only:
            continue
        print(f"running {name} ...", file=sys.stderr, flush=True)
        extra = sizes[size] + _opt_in(name, size, args.full)
        results[name] = run_one(name, args.device, extra, args.timeout)
    stamp = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit(),
        "size": size,
        "every_method_on_vgg16": args.full,
        "every_method_memory": args.full,
        "python": sys.version.split()[0],
    }
    rows = summary_rows(results)
    print(table_text(rows))
    write_markdown(Path(args.md), render(results, rows, stamp))
    numbers = headline(results)
    if args.json:
        Path(args.json).write_text(json.dumps({**numbers, **stamp, "results": results}, indent=1))
    failed = [n for n, r in results.items() if "error" in r]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return {**numbers, "failed": failed}


if __name__ == "__main__":
    sys.exit(1 if main()["failed"] else 0)
