"""Reading a run store: ``<store>/<run_id>/result.json`` per finished run, nothing else.

Only the JSON results are read (never checkpoints or masks), so a report works on results copied
from any machine, without torch. A result that cannot be used (a half-written file, a missing
field) is skipped with a warning and listed in :attr:`StoreData.skipped`; it never stops the rest.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

# Re-exported: the row constants were defined here before rows.py.
from earlyprune.analysis.rows import (
    LAYER_COLUMNS,
    MEASURED,
    RESULT_COLUMNS,
    STATUSES,
    Unusable,
    collapse_rows,
    column_order,
    curve_rows,
    layer_rows,
    read_json,
    run_row,
)
from earlyprune.core.errors import StoreError

RESULT_FILE = "result.json"
__all__ = [
    "LAYER_COLUMNS",
    "MEASURED",
    "RESULT_COLUMNS",
    "RESULT_FILE",
    "STATUSES",
    "StoreData",
    "load_results",
    "load_store",
]


@dataclass
class StoreData:
    """Everything a report needs from a store, as flat tables joined on ``run_id``.

    Attributes:
        store: The store folder that was read.
        results: One row per run (see :func:`load_results`).
        layers: One row per (run, prunable tensor): ``run_id, order, layer, density, numel,
            effective_density`` (NaN when not recorded); ``order`` is the tensor's position in
            the network (input to output).
        collapse: One row per (run, threshold): ``run_id, threshold, share`` — the overall share
            of conv output channels whose sparsity is at least ``threshold``.
        curves: One row per (run, logged epoch): ``run_id, epoch, step, lr, train_loss,
            test_accuracy``.
        skipped: ``(path, reason)`` for every result file that could not be used.
    """

    store: Path
    results: pd.DataFrame
    layers: pd.DataFrame
    collapse: pd.DataFrame
    curves: pd.DataFrame
    skipped: list[tuple[str, str]] = field(default_factory=list)


def load_results(store: str | Path) -> pd.DataFrame:
    """Reads every finished run of a store into one table.

    Args:
        store: The store folder, holding one ``<run_id>/result.json`` per finished run. Folders
            whose names start with ``_`` or ``.`` are internal and skipped, as are folders
            without a ``result.json`` (runs still in progress).

    Returns:
        One row per run, sorted by ``run_id``: ``run_id, status, error``, every spec field as a
        column (nested fields as ``outer.inner``, lists as JSON text), then ``test_accuracy,
        best_test_accuracy, density, effective_density`` (fractions; effective = weights on an
        input→output path), ``flops`` and ``flops_dense`` (forward multiply-adds per example of
        the pruned and the dense network) and ``collapse_100`` (overall share of conv channels
        pruned entirely; NaN for a network without conv channels). A dense run initialized from
        N(0, 1) has ablation ``init_normal`` (the reference of that ablation's runs). ``df.attrs["skipped"]`` lists ``(path, reason)`` for every
        result file that was skipped with a warning.

    Raises:
        StoreError: The path does not exist, is a file, or holds no usable results.
    """
    data = load_store(store)
    results = data.results
    results.attrs["skipped"] = list(data.skipped)
    return results


def load_store(store: str | Path) -> StoreData:
    """Reads a store into :class:`StoreData` (the run table plus per-layer, collapse and curves).

    Raises:
        StoreError: The path does not exist, is a file, or holds no usable results.
    """
    root = Path(store).expanduser()
    if not root.exists():
        raise StoreError(f"result store {str(root)!r} does not exist")
    if not root.is_dir():
        raise StoreError(f"result store {str(root)!r} is a file, not a folder of runs")
    rows: list[dict[str, Any]] = []
    layers: list[dict[str, Any]] = []
    collapse: list[dict[str, Any]] = []
    curves: list[dict[str, Any]] = []
    skipped: list[tuple[str, str]] = []
    for path in _result_files(root):
        try:
            raw = read_json(path)
            row = run_row(raw, default_id=path.parent.name)
        except Unusable as exc:
            skipped.append((str(path), str(exc)))
            warnings.warn(f"skipping {path}: {exc}", RuntimeWarning, stacklevel=3)
            continue
        rows.append(row)
        layers.extend(layer_rows(row["run_id"], raw))
        collapse.extend(collapse_rows(row["run_id"], raw))
        curves.extend(curve_rows(row["run_id"], raw))
    if not rows:
        detail = f" ({len(skipped)} unreadable result files skipped)" if skipped else ""
        raise StoreError(
            f"result store {str(root)!r} holds no results{detail}; "
            f"expected finished runs as <store>/<run_id>/{RESULT_FILE}"
        )
    _separate_versions(rows)
    results = pd.DataFrame(rows)
    results = results[column_order(results.columns)].sort_values("run_id", ignore_index=True)
    return StoreData(
        store=root,
        results=results,
        layers=pd.DataFrame(layers, columns=[*LAYER_COLUMNS]),
        collapse=pd.DataFrame(collapse, columns=["run_id", "threshold", "share"]),
        curves=pd.DataFrame(
            curves, columns=["run_id", "epoch", "step", "lr", "train_loss", "test_accuracy"]
        ),
        skipped=skipped,
    )


def _separate_versions(rows: list[dict[str, Any]]) -> None:
    """Rows are labelled as the user wrote the method (``my_scores.py:score``); where one such
    label covers two versions of the file (two content hashes), those rows keep the hashed name,
    so that results of different code never pool into one mean."""
    versions: dict[str, set[str]] = {}
    for row in rows:
        versions.setdefault(row["method"], set()).add(row["_hashed_method"])
    for row in rows:
        hashed = row.pop("_hashed_method")
        if len(versions[row["method"]]) > 1:
            row["method"] = hashed


def _result_files(root: Path) -> list[Path]:
    try:
        children = sorted(root.iterdir())
    except OSError as exc:
        raise StoreError(f"cannot read result store {str(root)!r}: {exc.strerror}") from None
    return [
        child / RESULT_FILE
        for child in children
        if not child.name.startswith(("_", ".")) and (child / RESULT_FILE).is_file()
    ]
