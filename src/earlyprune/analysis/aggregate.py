"""Mean ± std over seeds, and the matching sparsity of a benchmark method."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import pandas as pd

from earlyprune.analysis.load import MEASURED, RESULT_COLUMNS
from earlyprune.analysis.names import ABLATION_ORDER, METHOD_ORDER, rank
from earlyprune.core.errors import StoreError

DEFAULT_GROUP = ("model", "dataset", "method", "ablation", "prune_step", "sparsity")
SUMMARY_COLUMNS = (
    "mean",
    "std",
    "n",
    "n_disconnected",
    "n_diverged",
    "n_failed",
    "best_mean",
    "density",
    "effective_density",
    "flops_fraction",
    "collapse_100",
)
# Accuracies are fractions; a float sum such as 0.92 - 0.915 lands a few ulps off the boundary.
_EPS = 1e-9


def summarize(df: pd.DataFrame, group: Sequence[str] = DEFAULT_GROUP) -> pd.DataFrame:
    """Aggregates runs over seeds.

    Accuracy statistics use runs with status ``ok`` or ``disconnected`` (a mask that cuts every
    input→output path, trained anyway: its chance accuracy is the method's real outcome, as in
    the paper's Figure 5 for inverted masks; counted in ``n`` and in ``n_disconnected``);
    diverged and failed runs are counted, never averaged in (a diverged run's accuracy says
    nothing about the method's mean).

    Args:
        df: The table from :func:`load_results` (or any subset of its rows).
        group: Columns that identify one setting; every other spec field (the seed above all)
            is averaged over.

    Returns:
        One row per group, ordered with the known methods and ablations first: the group
        columns, then ``mean`` and ``std`` (ddof=1; NaN for a single seed) of ``test_accuracy``,
        ``n`` (ok and disconnected runs with an accuracy), ``n_disconnected`` (of those, the
        disconnected ones), ``n_diverged``, ``n_failed``, ``best_mean`` (mean of
        ``best_test_accuracy``), and the mask statistics ``density``, ``effective_density``,
        ``flops_fraction`` (pruned over dense forward multiply-adds) and ``collapse_100``,
        averaged over every run that recorded them, diverged ones included, since they describe
        the mask rather than training (NaN where no run recorded them).

    Raises:
        StoreError: A group column (or ``status``/``test_accuracy``) is not in ``df``.
    """
    group = list(group)
    needed = [*group, "status", "test_accuracy"]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise StoreError(
            f"cannot summarize: no column {', '.join(map(repr, missing))}; "
            f"available columns: {', '.join(map(str, df.columns))}"
        )
    work = df.copy()
    measured = work["status"].isin(MEASURED)
    work["_acc"] = work["test_accuracy"].astype(float).where(measured)
    work["_best"] = _column(work, "best_test_accuracy").where(measured)
    work["_n"] = work["_acc"].notna().astype(int)
    work["_cut"] = (work["status"].eq("disconnected") & work["_acc"].notna()).astype(int)
    work["_div"] = work["status"].eq("diverged").astype(int)
    work["_fail"] = work["status"].eq("failed").astype(int)
    work["_density"] = _column(work, "density")
    work["_effective"] = _column(work, "effective_density")
    work["_flops"] = _column(work, "flops") / _column(work, "flops_dense")
    work["_collapse"] = _column(work, "collapse_100")
    _warn_mixed_settings(work, group)
    out = (
        work.groupby(group, dropna=False, sort=False)
        .agg(
            mean=("_acc", "mean"),
            std=("_acc", "std"),
            n=("_n", "sum"),
            n_disconnected=("_cut", "sum"),
            n_diverged=("_div", "sum"),
            n_failed=("_fail", "sum"),
            best_mean=("_best", "mean"),
            density=("_density", "mean"),
            effective_density=("_effective", "mean"),
            flops_fraction=("_flops", "mean"),
            collapse_100=("_collapse", "mean"),
        )
        .reset_index()
    )
    for name in ("n", "n_disconnected", "n_diverged", "n_failed"):
        out[name] = out[name].astype(int)
    return sort_summary(out, group)


def sort_summary(summary: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Sorts by ``by``, with known methods and ablations first in the paper's order."""

    def key(column: pd.Series) -> pd.Series:
        if column.name == "method":
            return column.map(lambda v: rank(v, METHOD_ORDER))
        if column.name == "ablation":
            return column.map(lambda v: rank(v, ABLATION_ORDER))
        return column

    return summary.sort_values(list(by), key=key, ignore_index=True, na_position="last")


def matching_sparsity(
    summary: pd.DataFrame,
    method: str = "magnitude_after_training",
    tolerance: float = 0.005,
) -> dict[tuple[str, str], float | None]:
    """The highest sparsity up to which ``method`` matches the dense network, per setting.

    The rule, for each (model, dataset):

    1. Reference: the ``dense`` row (ablation ``none``, sparsity 0), with mean ``D`` and std
       ``S`` over its seeds. Without a dense row, the sparsity-0 row of ``method`` itself is
       used, else the sparsity-0 row with the most seeds.
    2. Allowed drop: ``min(S, tolerance)``, or ``tolerance`` alone when ``S`` is undefined
       (a single dense seed). ``tolerance`` is an absolute fraction: 0.005 is half a point.
    3. Walking ``method``'s sparsities above 0 in increasing order (ablation ``none``, its
       lowest ``prune_step``), a sparsity matches when its mean accuracy ``m`` satisfies
       ``D - m <= allowed`` (inclusive; being above ``D`` always matches). The walk stops at
       the first sparsity that does not match, or that has no ok run.
    4. The result is the last matching sparsity of the walk: accuracy *stays* matching up to
       it, as in the paper's "matching sparsities <= 73.8 %". ``None`` when there is no
       reference, no rows for ``method``, or its lowest sparsity already falls short.

    Args:
        summary: The table from :func:`summarize` with the default grouping.
        method: The benchmark whose sparsities are tested.
        tolerance: The largest drop below dense accuracy that still counts as matching.

    Returns:
        ``{(model, dataset): sparsity or None}`` for every setting in ``summary``.
    """
    for column in ("model", "dataset", "method", "sparsity", "mean", "std", "n"):
        if column not in summary.columns:
            raise StoreError(f"matching_sparsity needs a summary with a {column!r} column")
    if tolerance < 0:
        raise StoreError(f"tolerance must be a non-negative fraction, got {tolerance}")
    found: dict[tuple[str, str], float | None] = {}
    for (model, dataset), rows in summary.groupby(["model", "dataset"], sort=False):
        rows = unmodified(rows)
        found[(model, dataset)] = _walk(rows, method, tolerance)
    return found


def _walk(rows: pd.DataFrame, method: str, tolerance: float) -> float | None:
    reference = dense_reference(rows, prefer=method)
    if reference is None or math.isnan(reference["mean"]):
        return None
    allowed = tolerance
    if reference["n"] >= 2 and not math.isnan(reference["std"]):
        allowed = min(reference["std"], tolerance)
    curve = main_rows(rows[rows["method"] == method])
    best = None
    for _, row in curve[curve["sparsity"] > 0].sort_values("sparsity").iterrows():
        if math.isnan(row["mean"]) or reference["mean"] - row["mean"] > allowed + _EPS:
            break
        best = float(row["sparsity"])
    return best


def dense_reference(rows: pd.DataFrame, prefer: str | None = None) -> pd.Series | None:
    """The unpruned reference among one setting's rows (see :func:`matching_sparsity`)."""
    rows = unmodified(rows)
    dense = rows[rows["method"] == "dense"]
    if dense.empty:
        dense = rows[(rows["sparsity"] == 0) & (rows["method"] == prefer)]
    if dense.empty:
        dense = rows[rows["sparsity"] == 0].sort_values("n", ascending=False, kind="stable")
    if dense.empty:
        return None
    at_zero = dense[dense["sparsity"] == 0]
    return (at_zero if not at_zero.empty else dense).iloc[0]


def unmodified(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows without an ablation (all rows when the summary is not grouped by ablation)."""
    return rows[rows["ablation"] == "none"] if "ablation" in rows.columns else rows


def main_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Keeps, per method, only its lowest ``prune_step``: the curve at (or nearest to) init.

    Pruning at step 0 is the paper's main setting; a benchmark recorded only at a later step
    (LTR rewound to step t) keeps that step.
    """
    if "prune_step" not in rows.columns or rows.empty:
        return rows
    lowest = rows.groupby("method", sort=False)["prune_step"].transform("min")
    return rows[rows["prune_step"] == lowest]


def focus_sparsity(available: dict[str, set[float]], matching: float | None) -> tuple[float, str]:
    """Picks the sparsity at which one figure compares methods, and says why.

    Args:
        available: For each method, the sparsities at which it has data.
        matching: The setting's matching sparsity, if known.

    Returns:
        The matching sparsity if as many methods have data there as at any sparsity; else the
        highest of the sparsities shared by the most methods (the highest common sparsity when
        every method has one). Methods recorded at a single sparsity (LTR at one rewind step,
        say) are left out of the choice, so they never drag the comparison to their sparsity.
    """
    curves = {m: v for m, v in available.items() if len(v) >= 2}
    curves = curves or {m: v for m, v in available.items() if v}
    counts: dict[float, int] = {}
    for values in curves.values():
        for x in values:
            counts[x] = counts.get(x, 0) + 1
    if not counts:
        raise ValueError("no sparsities to choose from")
    most = max(counts.values())
    if matching is not None:
        at_matching = max((c for x, c in counts.items() if math.isclose(x, matching)), default=0)
        if at_matching == most:
            return matching, "highest matching sparsity"
    best = max(x for x, c in counts.items() if c == most)
    if most == len(curves):
        return best, "highest sparsity common to all methods"
    return best, f"highest sparsity shared by {most} methods"


def _column(df: pd.DataFrame, name: str) -> pd.Series:
    if name not in df.columns:
        return pd.Series(math.nan, index=df.index, dtype=float)
    return pd.to_numeric(df[name], errors="coerce").astype(float)


def _warn_mixed_settings(work: pd.DataFrame, group: list[str]) -> None:
    """Warns when a group holds two runs with one seed: its mean then mixes different settings."""
    if "seed" not in work.columns or "seed" in group:
        return
    clash = work[work.duplicated([*group, "seed"], keep=False)]
    if clash.empty:
        return
    spec_columns = [
        c
        for c in work.columns
        if c not in (*RESULT_COLUMNS, *group, "seed") and not str(c).startswith("_")
    ]
    varying = [
        c
        for c in spec_columns
        if clash.groupby(group, dropna=False)[c].nunique(dropna=False).gt(1).any()
    ]
    groups = len(clash.drop_duplicates(group))
    fields = ", ".join(varying) if varying else "none recorded (duplicate runs?)"
    warnings.warn(
        f"{groups} group(s) hold several runs with the same seed, so their means mix settings "
        f"(spec fields that differ: {fields}); filter the runs or add those fields to group=",
        RuntimeWarning,
        stacklevel=3,
    )
