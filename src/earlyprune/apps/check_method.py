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
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from earlyprune.analysis.verdicts import MIN_EFFECT, Verdict, verdicts
from earlyprune.apps.demo import DEFAULT_OUT, DEFAULT_STORE, DEMO_ABLATIONS, FULL, QUICK, Grid
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
from earlyprune.core.user_functions import one_line as _one_line
from earlyprune.methods.user import Target, register_target, registered, resolve  # noqa: F401
from earlyprune.run.environment import RunInterrupted

if TYPE_CHECKING:
    from earlyprune.sweeps.executors import Executor

#: Built-in methods the user method is compared with (random, magnitude and ERK with random
#: placement for the verdicts).
REFERENCE_METHODS = ("random", "magnitude", "erk", "snip", "grasp", "synflow")


def probe(target: Target, grid: Grid) -> None:
    """Calls the method once on the demo network and checks what it returns, before any run.

    The function gets a freshly initialized ``smallcnn`` and the scoring batch a run would pass
    (10 training images per class). It must return one real-valued, NaN-free score tensor per
    prunable weight (``ep.prunable(model)``: names and shapes), leave the weights unchanged, and
    its scores must give a mask at every sparsity of ``grid``.
    """
    import torch

    from earlyprune.data import scoring_batch
    from earlyprune.masks.mask import full_mask, prunable
    from earlyprune.methods.api import prune
    from earlyprune.methods.scoring import preserved_state
    from earlyprune.run.spec import RunSpec
    from earlyprune.run.stages import fresh_model, prepare

    setup = prepare(RunSpec(**grid.base()))
    model = fresh_model(setup)
    batch = scoring_batch(setup.bundle, per_class=10, seed=0, device=setup.device)
    label = target.label
    if target.function is not None:
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        try:
            with preserved_state(model):
                fn = target.function
                raw = fn(model, batch, full_mask(model), 0) if arity(fn) == 4 else fn(model, batch)
        except (UserCodeError, RunInterrupted) as exc:  # sys.exit, Ctrl-C or a hang in user code
            raise SpecError(f"{exc} when called on the demo network") from exc
        except Exception as exc:
            raise SpecError(
                f"{label} raised {_one_line(exc)}{_at(exc, target)} when called on the "
                "demo network (smallcnn, a batch of 100 Fashion-MNIST images)"
            ) from exc
        check_scores(raw, {n: tuple(p.shape) for n, p in prunable(model).items()}, label)
        if any(not torch.equal(before[n], p) for n, p in model.named_parameters()):
            raise SpecError(
                f"{label} changed the model's weights; scoring must leave them as "
                "they are (work on a copy or under torch.no_grad())"
            )
    for s in grid.sparsities:
        try:
            prune(model, target.method, s, batch=batch, seed=0)
        except Exception as exc:  # e.g. scores of a dtype torch cannot rank
            raise SpecError(
                f"{label}: pruning to {100 * s:.1f} % failed: {_one_line(exc)}{_at(exc, target)}"
            ) from exc


def _at(exc: BaseException, target: Target) -> str:
    """`` at FILE, line N`` where the user's own code raised (empty if not in their file)."""
    where = where_in_user_code(exc, target.function)
    return f" at {where}" if where else ""


def check_scores(raw: Any, shapes: dict[str, tuple[int, ...]], label: str) -> None:
    """One clear ``SpecError`` for the first problem with a returned score dict."""
    import torch

    if not isinstance(raw, dict):
        raise SpecError(
            f"{label} must return a dict of parameter name → Tensor, got {type(raw).__name__}"
        )
    missing = [n for n in shapes if n not in raw]
    extra = [str(k) for k in raw if k not in shapes]
    if missing or extra:
        what = f"no scores for {', '.join(missing)}" if missing else ""
        what += ("; " if missing and extra else "") + (
            f"scores for {', '.join(extra)}, which are not prunable" if extra else ""
        )
        raise SpecError(
            f"{label} returned {what}; the keys must be the prunable weights "
            f"(ep.prunable(model)): {', '.join(shapes)}"
        )
    for name, shape in shapes.items():
        value = raw[name]
        if not isinstance(value, torch.Tensor):
            raise SpecError(
                f"{label}: scores[{name!r}] is a {type(value).__name__}, expected a torch.Tensor"
            )
        if tuple(value.shape) != shape:
            raise SpecError(
                f"{label}: scores[{name!r}] has shape {tuple(value.shape)}, expected "
                f"{shape} (one score per weight)"
            )
        if value.dtype == torch.bool or value.is_complex():
            raise SpecError(f"{label}: scores[{name!r}] must hold real numbers, got {value.dtype}")
        if value.is_floating_point() and torch.isnan(value).any():
            raise SpecError(f"{label}: scores[{name!r}] contains NaN")


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


def parse_sparsities(text: str) -> tuple[float, ...]:
    """``"0.9,0.97"`` → (0.9, 0.97): distinct fractions in (0, 1); a ``SpecError`` otherwise."""
    import math

    from earlyprune.run.spec import canonical_sparsity

    values = []
    for part in _parts(text, "--sparsities"):
        try:
            value = float(part)
        except ValueError:
            value = math.nan
        if not (0 < value < 1) or canonical_sparsity(value) in values:
            what = "a repeated" if 0 < value < 1 else "not a"
            raise SpecError(
                f"--sparsities {text!r}: {part!r} is {what} fraction in (0, 1); "
                "write distinct fractions removed, e.g. --sparsities 0.9,0.97"
            )
        values.append(canonical_sparsity(value))
    return tuple(values)


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"0,1,2"`` → (0, 1, 2): distinct integers ≥ 0; a ``SpecError`` otherwise."""
    from earlyprune.run.spec import SEED_LIMIT

    values: list[int] = []
    for part in _parts(text, "--seeds"):
        value = int(part) if part.isdigit() else -1
        if not 0 <= value < SEED_LIMIT or value in values:
            what = "a repeated" if 0 <= value < SEED_LIMIT else "not a"
            raise SpecError(
                f"--seeds {text!r}: {part!r} is {what} seed (an integer ≥ 0); write "
                "distinct seeds, e.g. --seeds 0,1,2,3,4"
            )
        values.append(value)
    return tuple(values)


def _parts(text: str, flag: str) -> list[str]:
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise SpecError(
            f"{flag} {text!r}: give comma-separated values without gaps, e.g. "
            f"{flag} {'0.9,0.97' if flag == '--sparsities' else '0,1,2'}"
        )
    return parts


def grid_from_args(args: argparse.Namespace) -> Grid:
    """The grid of `check-method`: ``--quick`` or the full one, with ``--sparsities``,
    ``--seeds``, ``--model`` and ``--dataset`` in place of its own."""
    grid = dataclasses.replace(
        QUICK if args.quick else FULL, model=args.model, dataset=args.dataset
    )
    if getattr(args, "sparsities", None) is not None:
        grid = dataclasses.replace(grid, sparsities=parse_sparsities(args.sparsities))
    if getattr(args, "seeds", None) is not None:
        grid = dataclasses.replace(grid, seeds=parse_seeds(args.seeds))
    return grid


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
) -> CheckReport:
    """Runs the paper's sanity checks on a scoring method and writes the report.

    Args:
        target: ``FILE.py:FUNCTION``, ``package.module:FUNCTION`` or a registered method name.
        store: Run store; finished runs (the demo's, earlier checks') are reused.
        out: Report folder: the store's report plus ``check_<method>.txt`` and ``.json``.
        grid: ``FULL`` (the demo's sparsities and seeds), ``QUICK``, or a custom (test) grid.
        workers: Parallel worker processes for the built-in methods' runs.
        progress: Progress bars (default: on a terminal).
        min_effect: Smallest accuracy difference (fraction) a verdict counts.
        recompute_stale: Redo runs stored by an older earlyprune (see ``earlyprune.run.numerics``).
        timeout: Seconds one call of the user's function may take here (None: no limit); in
            worker processes ``DEFAULT_TIMEOUT_S``.
        backend: Where the runs run: "local", "ray", "slurm" or an executor (``run_specs``).

    Raises:
        SpecError: A bad target, signature or score dict, before anything is written.
    """
    from earlyprune.analysis import write_report
    from earlyprune.analysis.verdicts import layer_table
    from earlyprune.apps.demo import not_ok, results_table
    from earlyprune.run.store import RunStore
    from earlyprune.sweeps.grid import run_specs

    if timeout is not None and not (isinstance(timeout, int | float) and timeout > 0):
        raise SpecError(f"timeout must be a positive number of seconds, got {timeout!r}")
    resolved = resolve(target, timeout)
    with registered(resolved):
        probe(resolved, grid)
        # Worker processes start with the built-in registry: the specs carry the user's file
        # (``method_file``), which they import again, refusing it if it changed meanwhile.
        file = _absolute(target) if resolved.function is not None else ""
        own, references = battery_specs(resolved.name, grid, file)
        runs = RunStore(store)
        run_specs(
            [*references, *own],
            runs,
            workers=workers,
            progress=progress,
            recompute_stale=recompute_stale,
            backend=backend,
        )
    # A built-in target is among the references too: each run must count once.
    specs = list({s.run_id: s for s in [*own, *references]}.values())
    results = [r for r in (runs.read_result(s.run_id) for s in specs) if r]
    problems = not_ok(results)
    found = verdicts(results, resolved.name, grid.sparsities, min_effect)
    methods = (resolved.name, *(m for m in REFERENCE_METHODS if m != resolved.name))
    # The method as the user wrote it; the hashed name (its identity) stays in the run ids.
    labels = {resolved.name: resolved.label}
    parts = [
        f"check-method {resolved.label} (method {resolved.name!r}; {grid.label()})",
        "",
        *(v.line() for v in found),
        "",
        *(layer_table(results, methods, s, labels) for s in grid.sparsities),
        results_table(store, specs),
    ]
    text = "\n".join(parts)
    out = Path(out)
    index = write_report(store, out)
    slug = "".join(c if c.isalnum() or c in "._-" else "-" for c in resolved.name)
    summary_file = out / f"check_{slug}.txt"
    summary_file.write_text(text, encoding="utf-8")
    (out / f"check_{slug}.json").write_text(
        json.dumps([{"method": resolved.label, **v.to_dict()} for v in found], indent=1),
        encoding="utf-8",
    )
    return CheckReport(resolved.name, found, text, index, summary_file, problems)


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
