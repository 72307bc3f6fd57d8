"""Sweeps: a grid of runs from a TOML file, run by an executor, resumable after any crash.

A sweep file::

    # The paper's Figure 4 grid for ResNet-20 on CIFAR-10
    store = "runs/resnet20"             # optional default store (relative to the working folder)
    [base]                              # RunSpec fields shared by every run (toml_keys())
    dataset = "cifar10"                 # preset defaults to the dataset's, model to the preset's
    [axes]                              # RunSpec fields to expand as a Cartesian product
    method = ["random", "magnitude", "snip", "grasp", "synflow", "magnitude_after_training", "ltr"]
    sparsity = { paper_grid = [1, 18] } # 1 − 0.8^k for k = 1..18
    seed = [0, 1, 2, 3, 4]
    [options]
    dense = true                        # add each run's dense reference (default true)
    [[include]]                         # optional extra runs: base fields, then these
    method = "grasp_magnitude"
    sparsity = 0.9

Every key of ``[base]``, ``[axes]`` and ``[[include]]`` is a ``RunSpec`` field, which documents
itself (``earlyprune.run.settings``; the README's "Run fields" table is generated from it).
The dense training runs that others reuse (magnitude after training, LTR, pruning at step t) are
always part of the sweep and run first. A combination of method ``dense`` with sparsity > 0 or a
pruning ablation is skipped (counted in ``Sweep.skipped``), and so is a sparse-training method
(static, set, rigl, gmp) with an ablation that needs a mask scored at initialization; a dense
run is written as its ``dense_spec()`` (``ablation = "init_normal"`` becomes ``init =
"normal"``); any other invalid combination is an error.

Runs go to an executor (``earlyprune.sweeps.executors``: "local" worker processes, or "ray"). Workers
coordinate only through the store's claims, so a sweep can be killed at any instant and run
again, and two sweeps may share one store: every run is done once, never half-written.
"""

from __future__ import annotations

import copy
import functools
import sys
import tomllib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from earlyprune.core.errors import SpecError
from earlyprune.run import numerics
from earlyprune.run.logs import Log, SweepProgress
from earlyprune.run.spec import RunSpec
from earlyprune.run.store import RunStore
from earlyprune.sweeps.executors import EXECUTORS, Executor
from earlyprune.sweeps.executors.base import check_specs, tidy, with_prerequisites
from earlyprune.sweeps.executors.fused import with_fuse
from earlyprune.sweeps.toml_grid import (  # noqa: F401  (toml_keys: re-exported)
    grid_specs,
    read_options,
    table,
    toml_keys,
)

_TOP_KEYS = ("store", "base", "axes", "options", "include")
_STATES = ("ok", "disconnected", "diverged", "failed", "damaged", "running", "pending")


@dataclass(frozen=True)
class Sweep:
    """A loaded sweep: its runs (prerequisites first), default store and source file."""

    specs: list[RunSpec]
    store: str | None
    path: Path
    skipped: int = 0


def load_sweep(path: str | Path) -> Sweep:
    """Reads and expands a sweep file; every problem is a one-line ``SpecError`` naming it."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError(f"sweep file {path} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read sweep file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: invalid TOML: {exc}") from None
    try:
        unknown = sorted(set(doc) - set(_TOP_KEYS))
        if unknown:
            raise SpecError(f"unknown key(s) {', '.join(unknown)}; valid: {', '.join(_TOP_KEYS)}")
        store = doc.get("store")
        if store is not None and (not isinstance(store, str) or not store):
            raise SpecError(f"store must be a folder name, got {store!r}")
        options = read_options(table(doc, "options"))
        includes = doc.get("include", [])
        if not isinstance(includes, list) or not all(isinstance(i, dict) for i in includes):
            raise SpecError("include must be a list of tables ([[include]])")
        base, axes = table(doc, "base"), table(doc, "axes")
        if not (base or axes or includes):  # an empty file would run one default dense run
            raise SpecError("no runs: give run fields in [base], [axes] or [[include]]")
        with warnings.catch_warnings(record=True) as caught:  # said once, not once a run
            warnings.simplefilter("always")
            specs, skipped = grid_specs(base, axes, includes, options["dense"])
        for message in dict.fromkeys((w.category, str(w.message)) for w in caught):
            warnings.warn(message[1], message[0], stacklevel=2)
        if not specs:
            raise SpecError(f"no runs: all {skipped} combination(s) of the grid are skipped")
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from None
    return Sweep(specs=specs, store=store, path=path, skipped=skipped)


def expand(base: dict[str, Any], axes: dict[str, Any], *, dense: bool = True) -> list[RunSpec]:
    """The runs of a grid: ``base`` fields plus the Cartesian product of ``axes``.

    Args:
        base: RunSpec fields shared by every run (``preset``/``model`` default as in the CLI).
        axes: Field → non-empty list of values; ``sparsity`` may be ``{"paper_grid": [a, b]}``.
        dense: Add every run's dense reference (``RunSpec.dense_spec``).

    Returns:
        Distinct specs, dense runs first; prerequisites are always included.
    """
    return grid_specs(base, axes, [], dense)[0]


def run_specs(
    specs: list[RunSpec],
    store: RunStore,
    *,
    workers: int | None = None,
    backend: str | Executor = "local",
    data_root: str | None = None,
    retry_failed: bool = False,
    progress: bool | None = None,
    methods: Sequence[str] = (),
    recompute_stale: bool = False,
    log: Log | None = None,
    fuse: int | None = None,
    workers_per_gpu: int | None = None,
) -> list[dict[str, Any]]:
    """Runs what is not done yet and returns every spec's result, in the order of ``specs``.

    Finished runs are skipped without starting workers (``failed`` ones too, unless
    ``retry_failed``). A mask that cuts every input→output path is an outcome here, not a
    mistake: such runs train (as ``allow_disconnected``, which is not part of the run id) and
    are stored with status ``disconnected``; ``failed`` results that older versions stored for
    them are run again. Dense prerequisites run before the runs that need them, whether listed
    or not. The specs are checked against their data (prune step within training...) before
    anything runs, so a mistake stops the sweep with a ``SpecError`` and nothing written.

    Args:
        specs: The runs.
        store: Where results go (and are found).
        workers: Workers (default: one per core, or ``workers_per_gpu`` per GPU); 1 = here.
        backend: An ``EXECUTORS`` name ("local", "ray", "slurm") or an executor itself
            (e.g. ``SlurmExecutor(options)``).
        data_root: Folder holding the datasets.
        retry_failed: Run ``failed`` runs again.
        recompute_stale: Redo runs stored under older numerics (``earlyprune.run.numerics``);
            without it they stop the sweep with a ``SpecError`` saying so.
        progress: A bar over runs (default: on a terminal).
        methods: User scoring functions (``file.py:func`` or ``pkg.module:func``) that the
            workers must register before running (see ``earlyprune check-method``).
        log: Writes one line per finished run (``[17/219] <id> snip 90.0 % seed 0: ...``)
            where its ``lines`` says so.
        fuse: Train the runs that may be fused K at a time as packs (``executors.fused``).
    """
    _check_workers(workers, "workers")
    executor = _per_gpu(backend, workers_per_gpu)
    specs, executor = with_fuse(specs, executor, fuse, backend)
    specs = [_disconnected_allowed(s) for s in specs]
    every = with_prerequisites(specs)
    from earlyprune.run.pipeline import check_preset, servable

    if recompute_stale:
        numerics.forget_stale(store, [s.run_id for s in every])
    stored = {s.run_id: store.read_result(s.run_id) for s in every}
    numerics.check_all_current(stored.values(), store)  # never a silent mix of old and new
    for result in stored.values():
        if result is not None:
            check_preset(result, store)
    # A damaged finished run (a stored file that no longer matches its hash) is done again.
    todo = [
        s
        for s in every
        if _to_run(stored[s.run_id], retry_failed)
        or not servable(stored[s.run_id], store, retry_failed)
    ]
    if todo:
        # The driver of a Ray cluster may not hold the data: its checks are left to the tasks.
        check_specs(todo, data_root, need_data=backend == "local")
        progress = sys.stderr.isatty() if progress is None else progress
        with SweepProgress(len(todo), store, bar=progress, log=log) as bar:
            executor(
                todo,
                store,
                workers=workers,
                data_root=data_root,
                retry_failed=retry_failed,
                progress=bar,
                methods=methods,
            )
    tidy(store, [s.run_id for s in every])
    results = [store.read_result(s.run_id) for s in specs]
    return [r if r is not None else _missing(s) for r, s in zip(results, specs, strict=True)]


def _per_gpu(backend: str | Executor, workers_per_gpu: int | None) -> Executor:
    """The executor of ``backend`` running ``workers_per_gpu`` runs on each GPU at once
    ("local": pool workers per visible GPU; "ray": a 1/N GPU share per task)."""
    executor = EXECUTORS.get(backend) if isinstance(backend, str) else backend
    _check_workers(workers_per_gpu, "workers_per_gpu")
    if workers_per_gpu is None:  # the executor's default (local: from the networks' size)
        return executor
    if backend not in ("local", "ray"):
        if workers_per_gpu == 1:
            return executor
        raise SpecError("--workers-per-gpu applies to the local and ray backends")
    return functools.partial(executor, workers_per_gpu=workers_per_gpu)


def _check_workers(workers: object, name: str) -> None:
    if workers is not None and (
        isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
    ):
        raise SpecError(f"{name} must be a positive integer, got {workers!r}")


def sweep_status(specs: list[RunSpec], store: RunStore) -> dict[str, int]:
    """Counts: ``done`` (= ``ok`` + ``disconnected`` + ``diverged``), each of those, ``failed``,
    ``damaged``, ``running`` (live claim), ``pending``."""
    counts = dict.fromkeys(("done", *_STATES), 0)
    for spec in specs:
        counts[run_state(spec, store)] += 1
    counts["done"] = counts["ok"] + counts["disconnected"] + counts["diverged"]
    return counts


# ---- status and checks -----------------------------------------------------------------------
def run_state(spec: RunSpec, store: RunStore) -> str:
    """ok / disconnected / diverged / failed (stored), damaged (stored files changed), running
    (a live claim) or pending (an older sweep's ``failed`` refusal of a disconnected mask too:
    the next ``sweep run`` trains it)."""
    from earlyprune.run.integrity import damage
    from earlyprune.run.pipeline import to_retry

    result = store.read_result(spec.run_id)
    if result is not None and to_retry(result, retry_failed=False):
        result = None
    if result is not None:
        return "damaged" if damage(store.run_dir(spec.run_id), result) else str(result["status"])
    return "running" if store.claim_state(spec.run_id) == "live" else "pending"


def _disconnected_allowed(spec: RunSpec) -> RunSpec:
    """``spec`` with ``allow_disconnected``: a permission, not part of the run id, so it is set
    without validating the spec again (a user's method may be registered only in the workers)."""
    if spec.allow_disconnected:
        return spec
    allowed = copy.copy(spec)
    object.__setattr__(allowed, "allow_disconnected", True)
    return allowed


def _to_run(result: dict[str, Any] | None, retry_failed: bool) -> bool:
    from earlyprune.run.pipeline import to_retry

    return result is None or to_retry(result, retry_failed)


def _missing(spec: RunSpec) -> dict[str, Any]:
    # Only reachable if a worker vanished without a trace (e.g. a lost Ray node): say so.
    return {
        "run_id": spec.run_id,
        "spec": spec.to_dict(),
        "status": "missing",
        "error": "no result was stored",
        "test_accuracy": None,
    }
