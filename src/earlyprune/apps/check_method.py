"""`earlyprune check-method`: the paper's sanity checks on your own scoring function.

Write the scoring function in a file of your own::

    # my_method.py
    import earlyprune as ep

    def my_score(model, batch, mask, seed):  # batch = (inputs, labels): 10 images per class
        return {name: w.detach().abs() for name, w in ep.prunable(model).items()}  # higher = keep

(the signature of ``@register_method`` scorers; ``mask`` is the current mask, all True for
one-shot pruning, and ``seed`` the run's seed; the short form ``def my_score(model, batch)`` is
accepted too)

then ``earlyprune check-method my_method.py:my_score`` (or ``package.module:my_score``, or a
registered method name such as ``snip``) runs the battery on the demo setting (``smallcnn`` on
the embedded Fashion-MNIST subset, the demo's sparsities and seeds; ``--model FILE.py:F`` and
``--dataset npz:FILE`` put your own network or data in their place): the method with and without
each ablation (shuffle, reinit, invert), next to random, magnitude, ERK with random placement,
SNIP, GraSP and SynFlow. It
prints one verdict per check and sparsity (rule in :mod:`earlyprune.analysis.verdicts`), the layer-wise
densities and neuron collapse of every method, and writes the report folder.

A user method is named ``<file stem or module>:<function>@<8 hex digits>`` in its run specs —
the digest of the file and of the modules beside it that it imports (``earlyprune.core.user_code``)
— so runs are reused while the code is unchanged and redone after an edit; reports name it as
the user wrote it. ``--sparsities 0.9,0.97 --seeds 0,1,2,3,4`` sets the grid. The built-in
methods keep their names, so ``check-method snip`` reuses the demo's SNIP runs in the same store.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from earlyprune.analysis.checks import fused_label
from earlyprune.analysis.verdicts import MIN_EFFECT, Verdict, verdicts
from earlyprune.apps.check_args import (  # noqa: F401  (re-exported: defined here before)
    grid_from_args,
    parse_seeds,
    parse_sparsities,
)
from earlyprune.apps.demo import (  # noqa: F401  (QUICK re-exported: check.QUICK)
    DEFAULT_OUT,
    DEFAULT_STORE,
    DEMO_ABLATIONS,
    FULL,
    QUICK,
    Grid,
)
from earlyprune.apps.probe import check_scores, probe  # noqa: F401  (re-exported)
from earlyprune.core.errors import SpecError
from earlyprune.core.user_functions import (  # noqa: F401  (re-exported: check.resolve etc.)
    DEFAULT_TIMEOUT_S,
    USAGE,
    UserCodeError,
    arity,
    check_signature,
    where_in_user_code,
)
from earlyprune.core.user_functions import absolute as _absolute
from earlyprune.methods.user import Target, register_target, registered, resolve  # noqa: F401

if TYPE_CHECKING:
    from earlyprune.sweeps.executors import Executor

#: Built-in methods the user method is compared with (random, magnitude and ERK with random
#: placement for the verdicts).
REFERENCE_METHODS = ("random", "magnitude", "erk", "snip", "grasp", "synflow")


def battery_specs(name: str, grid: Grid, file: str = "") -> tuple[list[Any], list[Any]]:
    """The method's runs (every ablation) and the reference methods' unmodified runs.

    ``file`` is a user method's absolute ``FILE.py:FUNC`` (``RunSpec.method_file``), from which
    worker processes import it again.
    """
    from earlyprune.apps.demo import demo_specs

    own = demo_specs(grid, methods=(name,), ablations=DEMO_ABLATIONS, baselines=())
    if file:
        own = [s.replace(method_file=file) if s.method == name else s for s in own]
    references = demo_specs(grid, methods=REFERENCE_METHODS, ablations=("none",), baselines=())
    return own, references


@dataclass(frozen=True)
class CheckReport:
    """What `check-method` found: verdicts, the text it printed, and the files it wrote."""

    name: str
    verdicts: list[Verdict]
    text: str
    index: Path
    summary_file: Path
    problems: list[str]  # one line per run that did not end ok


def check_method(
    target: str,
    store: str | Path = DEFAULT_STORE,
    out: str | Path = DEFAULT_OUT,
    *,
    grid: Grid = FULL,
    workers: int | None = None,
    progress: bool | None = None,
    min_effect: float = MIN_EFFECT,
    recompute_stale: bool = False,
    timeout: float | None = DEFAULT_TIMEOUT_S,
    backend: str | Executor = "local",
    fuse: int | None = None,
    workers_per_gpu: int | None = None,
) -> CheckReport:
    """Runs the paper's sanity checks on a scoring method and writes the report.

    Args:
        target: ``FILE.py:FUNCTION``, ``package.module:FUNCTION`` or a registered method name.
        store: Run store; finished runs (the demo's, earlier checks') are reused.
        out: Report folder: the store's report plus ``check_<method>.txt`` and ``.json``.
        grid: ``FULL`` (the demo's sparsities and seeds), ``QUICK``, or a custom (test) grid.
        workers: Parallel worker processes (``workers_per_gpu``: runs per GPU; ``run_specs``).
        progress: Progress bars (default: on a terminal).
        min_effect: Smallest accuracy difference (fraction) a verdict counts.
        recompute_stale: Redo runs stored by an older earlyprune (see ``earlyprune.run.numerics``).
        timeout: Seconds one call of the user's function may take here (None: no limit); in
            worker processes ``DEFAULT_TIMEOUT_S``.
        backend: Where the runs run: "local", "ray", "slurm" or an executor (``run_specs``).
        fuse: Train the pruned runs K at a time as fused packs (their own run ids).

    Raises:
        SpecError: A bad target, signature or score dict, before anything is written.
    """
    from earlyprune.analysis import write_report
    from earlyprune.analysis.verdicts import layer_table
    from earlyprune.apps.demo import not_ok, results_table
    from earlyprune.run.store import RunStore
    from earlyprune.sweeps.executors.fused import fused_specs
    from earlyprune.sweeps.grid import run_specs

    if timeout is not None and not (isinstance(timeout, int | float) and timeout > 0):
        raise SpecError(f"timeout must be a positive number of seconds, got {timeout!r}")
    resolved = resolve(target, timeout)
    with registered(resolved):
        probe(resolved, grid)
        # Worker processes start with the built-in registry: the specs carry the user's file
        # (``method_file``), which they import again, refusing it if it changed meanwhile.
        file = _absolute(target) if resolved.function is not None else ""
        own, references = (fused_specs(s, fuse) for s in battery_specs(resolved.name, grid, file))
        runs = RunStore(store)
        run_specs(
            [*references, *own],
            runs,
            workers=workers,
            progress=progress,
            recompute_stale=recompute_stale,
            backend=backend,
            fuse=fuse,
            workers_per_gpu=workers_per_gpu,
        )
    # A built-in target is among the references too: each run must count once.
    specs = list({s.run_id: s for s in [*own, *references]}.values())
    results = [r for r in (runs.read_result(s.run_id) for s in specs) if r]
    methods = _shown(resolved.name, fuse)
    found = verdicts(results, methods[0], grid.sparsities, min_effect)
    # The method as the user wrote it; the hashed name (its identity) stays in the run ids.
    labels = {methods[0]: resolved.label}
    parts = [
        f"check-method {resolved.label} (method {resolved.name!r}; {grid.label()})",
        "",
        *(v.line() for v in found),
        "",
        *(layer_table(results, methods, s, labels) for s in grid.sparsities),
        results_table(store, specs),
    ]
    text = "\n".join(parts)
    index = write_report(store, Path(out))
    summary_file = _write_summary(Path(out), resolved, found, text)
    return CheckReport(resolved.name, found, text, index, summary_file, not_ok(results))


def _shown(name: str, fuse: int | None) -> tuple[str, ...]:
    """The labels of the checked method (first) and the references in the report."""
    methods = (name, *(m for m in REFERENCE_METHODS if m != name))
    # Fused runs are labelled ``name[fused]`` (never pooled with solo twins): judge those.
    return methods if fuse is None else tuple(map(fused_label, methods))


def _write_summary(out: Path, resolved: Target, found: list[Verdict], text: str) -> Path:
    """``check_<method>.txt`` (the text) and ``.json`` (the verdicts) beside the report."""
    slug = "".join(c if c.isalnum() or c in "._-" else "-" for c in resolved.name)
    summary_file = out / f"check_{slug}.txt"
    summary_file.write_text(text, encoding="utf-8")
    (out / f"check_{slug}.json").write_text(
        json.dumps([{"method": resolved.label, **v.to_dict()} for v in found], indent=1),
        encoding="utf-8",
    )
    return summary_file


def cli_check_method(args: argparse.Namespace) -> int:
    """``earlyprune check-method TARGET [--quick] [--sparsities S,S] [--seeds N,N] [--model M]
    [--dataset D] [--store DIR]
    [--out DIR] [--workers N] [--timeout SECONDS] [--debug]``.

    Exit 0; 1 if some run did not end ok (its verdicts then say so); 2 for a bad target.
    """
    grid = grid_from_args(args)  # a bad --sparsities/--seeds: one line, before anything runs
    try:
        report = check_method(
            args.target,
            args.store or DEFAULT_STORE,
            args.out or DEFAULT_OUT,
            grid=grid,
            workers=args.workers,
            recompute_stale=args.recompute_stale,
            timeout=args.timeout,
            backend=args.backend,  # a name or an executor (the CLI builds the Slurm one)
            fuse=args.fuse,
            workers_per_gpu=args.workers_per_gpu,
        )
    except SpecError as exc:
        if args.debug and exc.__cause__ is not None:  # the user's own traceback, then the line
            import sys
            import traceback

            traceback.print_exception(exc.__cause__, file=sys.stderr)
        raise
    print(report.text, end="")
    for line in report.problems:
        print(f"not ok: {line}")
    print(f"verdicts: {report.summary_file}   report: {report.index}")
    return 1 if report.problems else 0
