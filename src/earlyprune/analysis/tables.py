"""Tables like the paper's Appendix H: accuracy (%) per method and sparsity, mean ± std.

One grid of cells is built per (model, dataset) and kind of table, then rendered to Markdown,
LaTeX and HTML, so the three can never disagree.
"""

from __future__ import annotations

from collections import Counter

import pandas as pd

from earlyprune.analysis.aggregate import DEFAULT_GROUP, main_rows, unmodified

# Re-exported: Cell, Grid and the renderers were defined here before grid.py.
from earlyprune.analysis.grid import Cell, Grid, grid_html, latex, markdown, tex_escape
from earlyprune.analysis.names import (
    ABLATION_ORDER,
    METHOD_ORDER,
    ablation_label,
    method_label,
    ordered,
    setting_label,
)
from earlyprune.core.errors import StoreError

__all__ = ["Cell", "Grid", "build_grids", "grid_html", "tables", "tex_escape"]


def tables(summary: pd.DataFrame) -> dict[str, str]:
    """Renders every table of a summary, like the paper's Appendix H.

    Per (model, dataset): the methods (ablation ``none``, each at its lowest prune step; the
    dense network in the 0.0 column), then method × ablation for methods with ablations, then
    method × prune step when some method was pruned at several steps. Columns are sparsities in
    percent; cells are mean ± std of test accuracy in percent. A cell with fewer seeds than the
    table's most common count shows ``(n=k)``; runs whose mask cut every input→output path
    (trained to chance, part of the mean) are marked ``(k disconnected)``; diverged and failed
    runs are marked, e.g. ``— (1 diverged)``.

    Args:
        summary: The table from :func:`summarize` with the default grouping.

    Returns:
        ``{"markdown": ..., "latex": ..., "html": ...}``, each holding every table.
    """
    grids = build_grids(summary)
    return {
        "markdown": "\n".join(markdown(g) for g in grids),
        "latex": "\n".join(latex(g) for g in grids),
        "html": "\n".join(grid_html(g) for g in grids),
    }


def build_grids(summary: pd.DataFrame) -> list[Grid]:
    """The tables of :func:`tables`, as cell grids."""
    check_summary(summary)
    grids = []
    for setting, rows in summary.groupby(["model", "dataset"], sort=False):
        name = setting_label(*setting)
        plain = unmodified(rows)
        grids.append(_grid(f"{name}: methods", setting, ("Method",), main_rows(plain), ["method"]))
        ablated = _at_main_step(rows[~rows["method"].isin(ablation_free_methods(rows))], rows)
        if not ablated.empty:
            headers = ("Method", "Ablation")
            grids.append(
                _grid(f"{name}: ablations", setting, headers, ablated, ["method", "ablation"])
            )
        stepped = plain["method"].isin(step_methods(rows)) & plain["sparsity"].isin(
            stepped_at(rows)
        )
        if stepped.any():
            title, keys = f"{name}: pruning after t training steps", ["method", "prune_step"]
            grids.append(_grid(title, setting, ("Method", "t"), plain[stepped], keys))
    return grids


def check_summary(summary: pd.DataFrame) -> None:
    """Raises :class:`StoreError` unless ``summary`` came from :func:`summarize`'s defaults."""
    needed = (*DEFAULT_GROUP, "mean", "std", "n", "n_diverged", "n_failed")
    missing = [c for c in needed if c not in summary.columns]
    if missing:
        raise StoreError(
            f"tables need a summary made with the default grouping; missing {', '.join(missing)}"
        )


def ablation_free_methods(rows: pd.DataFrame) -> set[str]:
    """Methods of one setting that have no ablation other than ``none``."""
    has = rows.groupby("method")["ablation"].agg(lambda a: bool((a != "none").any()))
    return set(has[~has].index)


def step_methods(rows: pd.DataFrame) -> list[str]:
    """Methods of one setting pruned at two or more steps (ablation ``none``), in order."""
    plain = unmodified(rows)
    counts = plain.groupby("method")["prune_step"].nunique()
    return ordered(counts[counts >= 2].index, METHOD_ORDER)


def stepped_at(rows: pd.DataFrame) -> set[float]:
    """Sparsities at which some method of one setting was pruned at two or more steps."""
    plain = unmodified(rows)
    steps = plain.groupby(["method", "sparsity"])["prune_step"].nunique()
    return {float(s) for (_, s), n in steps.items() if n >= 2}


def sparsity_labels(values: list[float]) -> dict[float, str]:
    """Percent labels with one decimal (``89.3``), more where two sparsities would collide."""
    distinct = sorted(set(values))
    for decimals in range(1, 7):
        labels = {s: f"{100 * s:.{decimals}f}" for s in distinct}
        if len(set(labels.values())) == len(distinct):
            return labels
    return {s: repr(100 * s) for s in distinct}


def _at_main_step(ablated: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    step = main_rows(unmodified(rows)).groupby("method")["prune_step"].first()
    keep = ablated["prune_step"] == ablated["method"].map(step).fillna(ablated["prune_step"])
    return ablated[keep]


def _grid(
    title: str,
    setting: tuple[str, str],
    headers: tuple[str, ...],
    rows: pd.DataFrame,
    keys: list[str],
) -> Grid:
    labels = sparsity_labels(rows["sparsity"].tolist())
    columns = sorted(labels)
    seeds = Counter(int(n) for n in rows["n"] if n > 0)
    modal = max(seeds, key=lambda k: (seeds[k], k)) if seeds else 0
    out = []
    for key, part in _ordered_groups(rows, keys):
        by_sparsity = {float(r["sparsity"]): r for _, r in part.iterrows()}
        cells = tuple(_cell(by_sparsity.get(s), modal) for s in columns)
        out.append((_row_labels(keys, key, part), cells))
    return Grid(title, setting, headers, tuple(labels[s] for s in columns), tuple(out))


def _ordered_groups(rows: pd.DataFrame, keys: list[str]) -> list[tuple[tuple, pd.DataFrame]]:
    groups = dict(iter(rows.groupby(keys, sort=False)))
    methods = ordered((k[0] for k in groups), METHOD_ORDER)

    def order(key: tuple) -> tuple:
        second = key[1] if len(key) > 1 else 0
        if keys[1:] == ["ablation"]:
            second = ordered({k[1] for k in groups}, ABLATION_ORDER).index(key[1])
        return (methods.index(key[0]), second)

    return [(k, groups[k]) for k in sorted(groups, key=order)]


def _row_labels(keys: list[str], key: tuple, part: pd.DataFrame) -> tuple[str, ...]:
    label = method_label(key[0])
    if keys[1:] == ["ablation"]:
        return (label, ablation_label(key[1]))
    if keys[1:] == ["prune_step"]:
        return (label, str(int(key[1])))
    step = int(part["prune_step"].iloc[0])
    # A method recorded only after some training (LTR rewound to step t) says so.
    return (f"{label} (t={step})" if step else label,)


def _cell(row: pd.Series | None, modal: int) -> Cell | None:
    if row is None:
        return None
    n = int(row["n"])
    return Cell(
        mean=float(row["mean"]),
        std=float(row["std"]),
        n=n,
        n_diverged=int(row.get("n_diverged", 0)),
        n_failed=int(row.get("n_failed", 0)),
        show_n=0 < n < modal,
        n_disconnected=int(row.get("n_disconnected", 0)),
    )
