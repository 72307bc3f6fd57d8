"""`earlyprune demo`: the paper's Sections 4–5 in miniature, offline, in a few minutes on a CPU.

The demo network (``smallcnn``) is trained on the embedded real dataset (``fashion-mnist-mini``)
with the ``demo`` preset. Every method the paper studies at initialization (random, magnitude,
SNIP, GraSP, SynFlow) and the benchmark magnitude pruning after training are run at three of the
paper's sparsities, each unmodified and with the three ablations of Section 5 (shuffle, reinit,
invert), over three seeds: 6 × 3 × 4 × 3 = 216 runs, plus ERK with random placement (the
layer-wise baseline, 9 runs) and 3 dense runs. The runs form a sweep in a
store, so an interrupted demo resumes where it stopped, and ``--quick`` (one sparsity, two seeds)
is a subset of the full demo: its runs are reused by a later full demo in the same store.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from earlyprune.run.spec import RunSpec, paper_sparsities

if TYPE_CHECKING:
    from earlyprune.sweeps.executors import Executor

#: The paper's methods at initialization, then its benchmark (Figures 4 and 5).
DEMO_METHODS = ("random", "magnitude", "snip", "grasp", "synflow", "magnitude_after_training")
#: Unmodified, then the ablations of Section 5 (init N(0, 1) is left out: it needs its own dense).
DEMO_ABLATIONS = ("none", "shuffle", "reinit", "invert")
#: Layer-wise baselines run unmodified only: ERK's allocation with random placement.
DEMO_BASELINES = ("erk",)
DEFAULT_STORE = "runs/demo"
DEFAULT_OUT = "report"


def _grid_k(*ks: int) -> tuple[float, ...]:
    """Sparsities 1 − 0.8^k of the paper's grid."""
    return tuple(paper_sparsities(k, k)[0] for k in ks)


@dataclass(frozen=True)
class Grid:
    """Which runs a demo (or a method check) makes, on the ``demo`` preset.

    Attributes:
        sparsities: Fractions removed; the defaults come from the paper's grid 1 − 0.8^k.
        seeds: Replicates.
        epochs: Training length override (None = the preset's 3 epochs).
        preset: Training preset on the demo network and data. Tests register a tinier one;
            worker processes only know presets defined in ``earlyprune.run.spec`` (use workers=1).
        model: Another network (a name or ``FILE.py:FACTORY``) trained with the same preset.
        dataset: Other data (``npz:FILE``, ``FILE.py:LOADER``), same preset (its subsets cap
            the training and test splits).
    """

    sparsities: tuple[float, ...]
    seeds: tuple[int, ...]
    epochs: float | None = None
    preset: str = "demo"
    model: str | None = None
    dataset: str | None = None

    def base(self) -> dict[str, Any]:
        """The RunSpec fields every run of the grid shares (``model``/``dataset``: the user's
        own network or data for `check-method`, else the preset's)."""
        # Degenerate masks are findings here, not mistakes: inverted SynFlow at 89 % empties
        # whole layers of smallcnn (chance accuracy, effective density 0 in result.json).
        fields: dict[str, Any] = {"preset": self.preset, "allow_disconnected": True}
        fields.update({k: v for k, v in (("model", self.model), ("dataset", self.dataset)) if v})
        if self.epochs is not None:
            fields["epochs"] = self.epochs
        return fields

    def label(self) -> str:
        spars = ", ".join(f"{100 * s:.1f}" for s in self.sparsities)
        return f"sparsities {spars} %, {len(self.seeds)} seeds"


# Sized by measurement on the 2-core dev machine while other jobs ran (load average 2-6): the
# full demo took 156-197 s, --quick 35-62 s, with 2 worker processes.
#: k = 10, 13, 16: 89.3 % (random still close), 94.5 % and 97.2 % (random falls behind).
FULL = Grid(sparsities=_grid_k(10, 13, 16), seeds=(0, 1, 2))
#: One sparsity where the paper's findings show clearly, two seeds: a subset of ``FULL``.
QUICK = Grid(sparsities=_grid_k(16), seeds=(0, 1))


def demo_methods(choice: str | None) -> tuple[str, ...]:
    """The methods of ``earlyprune demo --methods``: None → the paper's, "all" → every one.

    "all" is the paper's methods followed by every other registered method (the modern
    baselines, the allocation baselines, user-registered ones) and the sparse-training methods;
    a comma-separated list is checked against the registries.

    Raises:
        SpecError: naming an unknown method and the valid ones.
    """
    from earlyprune.core.errors import SpecError
    from earlyprune.methods.scoring import METHODS
    from earlyprune.methods.sparse_training import METHODS_FOR_DEMO

    # Scorers (at-init methods and allocation baselines), then sparse training / gradual pruning
    # (their refused ablations are skipped by the sweep expansion).
    registered = (*METHODS.names(), *METHODS_FOR_DEMO)
    if choice is None:
        return DEMO_METHODS
    if choice.strip() == "all":
        return DEMO_METHODS + tuple(m for m in registered if m not in DEMO_METHODS)
    names = tuple(dict.fromkeys(n.strip() for n in choice.split(",") if n.strip()))
    valid = (*registered, *(m for m in DEMO_METHODS if m not in registered))
    unknown = [n for n in names if n not in valid]
    if unknown or not names:
        raise SpecError(
            f"unknown demo method(s) {', '.join(unknown) or repr(choice)}; choose "
            f"'all' or a comma-separated list of: {', '.join(valid)}"
        )
    return names


def demo_specs(
    grid: Grid,
    methods: tuple[str, ...] = DEMO_METHODS,
    ablations: tuple[str, ...] = DEMO_ABLATIONS,
    baselines: tuple[str, ...] = DEMO_BASELINES,
) -> list[RunSpec]:
    """The demo's runs: methods × sparsities × ablations × seeds, then the layer-wise
    ``baselines`` unmodified, plus the dense runs (first)."""
    from earlyprune.sweeps.grid import expand

    axes = {
        "method": list(methods),
        "sparsity": list(grid.sparsities),
        "ablation": list(ablations),
        "seed": list(grid.seeds),
    }
    specs = expand(grid.base(), axes, dense=True)
    if baselines:
        more = expand(grid.base(), {**axes, "method": list(baselines), "ablation": ["none"]})
        specs += [s for s in more if s not in specs]
    return specs


def run_grid(
    specs: list[RunSpec],
    store: str | Path,
    *,
    workers: int | None = None,
    progress: bool | None = None,
    recompute_stale: bool = False,
    backend: str | Executor = "local",
    fuse: int | None = None,
    workers_per_gpu: int | None = None,
) -> list[dict[str, Any]]:
    """Runs what is missing (resuming anything interrupted) and returns every spec's result."""
    from earlyprune.run.store import RunStore
    from earlyprune.sweeps.grid import run_specs

    return run_specs(
        specs,
        RunStore(store),
        workers=workers,
        progress=progress,
        recompute_stale=recompute_stale,
        backend=backend,
        fuse=fuse,
        workers_per_gpu=workers_per_gpu,
    )


def results_table(store: str | Path, specs: list[RunSpec]) -> str:
    """``summary_text`` of just these runs (a store may hold others), mean ± std over seeds."""
    from earlyprune.analysis import load_results, summarize, summary_text

    df = load_results(store)
    wanted = {s.run_id for s in specs}
    return summary_text(summarize(df[df["run_id"].isin(wanted)]))


def not_ok(results: list[dict[str, Any]]) -> list[str]:
    """One line per run that did not end ``ok`` or ``disconnected`` (a mask that cuts every
    path, trained to chance: an outcome): what it was, its status and error."""
    return [
        f"{r['run_id']} {r['spec'].get('method')} {r['spec'].get('ablation')} "
        f"s={r['spec'].get('sparsity')} seed={r['spec'].get('seed')}: {r['status']} "
        f"{r.get('error') or ''}".rstrip()
        for r in results
        if r["status"] not in ("ok", "disconnected")
    ]


@dataclass(frozen=True)
class DemoResult:
    """What the demo printed and wrote."""

    text: str  # the results table and the verdicts, as printed
    index: Path  # the report's index.html
    problems: list[str]  # one line per run that did not end ok


def run_demo(
    store: str | Path = DEFAULT_STORE,
    out: str | Path = DEFAULT_OUT,
    *,
    grid: Grid = FULL,
    workers: int | None = None,
    progress: bool | None = None,
    methods: tuple[str, ...] = DEMO_METHODS,
    recompute_stale: bool = False,
    backend: str | Executor = "local",
    fuse: int | None = None,
    workers_per_gpu: int | None = None,
) -> DemoResult:
    """Runs the demo grid in ``store`` (resuming), prints nothing, writes the report to ``out``.

    Args:
        store: Run store (created if needed; finished runs in it are reused).
        out: Report folder (``index.html``, tables, figures); it covers every run in ``store``.
        grid: ``FULL`` (the demo), ``QUICK`` (``--quick``) or a custom grid.
        workers: Parallel worker processes (default: one per core).
        progress: A progress bar over runs (default: on a terminal).
        methods: The methods run (``demo_methods("all")``: every registered one).
        recompute_stale: Redo runs stored by an older earlyprune (see ``earlyprune.run.numerics``).
        backend: Where the runs run: "local", "ray", "slurm" or an executor (``run_specs``).
        fuse: Train the pruned runs K at a time as fused packs (their own run ids).
        workers_per_gpu: Runs sharing each GPU at once (default: from the step size; ``run_specs``).
    """
    from earlyprune.analysis import write_report
    from earlyprune.analysis.verdicts import verdict_matrix
    from earlyprune.sweeps.executors.fused import fused_specs

    specs = fused_specs(demo_specs(grid, methods), fuse)
    results = run_grid(
        specs,
        store,
        workers=workers,
        progress=progress,
        recompute_stale=recompute_stale,
        backend=backend,
        fuse=fuse,
        workers_per_gpu=workers_per_gpu,
    )
    problems = not_ok(results)
    checked = [m for m in methods if m != "random"]
    text = (
        results_table(store, specs) + "\n" + verdict_matrix(results, checked, max(grid.sparsities))
    )
    return DemoResult(text, write_report(store, out), problems)


def cli_demo(args: argparse.Namespace) -> int:
    """``earlyprune demo [--quick] [--store DIR] [--out DIR] [--workers N]``; exit 1 if a run failed."""
    from earlyprune.sweeps.executors.fused import check_fuse

    if args.fuse is not None:  # a bad K: one line before anything is printed or run
        check_fuse(args.fuse)
    grid = QUICK if args.quick else FULL
    store = args.store or DEFAULT_STORE
    methods = demo_methods(getattr(args, "methods", None))
    n = len(demo_specs(grid, methods))
    print(
        f"earlyprune demo{' --quick' if args.quick else ''}: {n} runs of smallcnn on "
        f"fashion-mnist-mini ({grid.label()}) in {store}; finished runs are reused",
        flush=True,
    )
    started = time.perf_counter()
    result = run_demo(
        store,
        args.out or DEFAULT_OUT,
        grid=grid,
        workers=args.workers,
        methods=methods,
        recompute_stale=args.recompute_stale,
        backend=args.backend,  # a name or an executor (the CLI builds the Slurm one)
        fuse=args.fuse,
        workers_per_gpu=args.workers_per_gpu,
    )
    print(result.text, end="")
    for line in result.problems:
        print(f"not ok: {line}")
    print(f"report: {result.index}   ({time.perf_counter() - started:.0f} s)")
    return 1 if result.problems else 0
