"""A compact fixed-width summary for terminals (``earlyprune status`` / ``report``)."""

from __future__ import annotations

import math

import pandas as pd

from earlyprune.analysis.names import setting_label
from earlyprune.analysis.tables import check_summary, sparsity_labels


def summary_text(summary: pd.DataFrame) -> str:
    """Renders a summary as fixed-width text, one block per (model, dataset).

    Rows are method × ablation (× prune step where it is not 0), using the names a user types on
    the command line (``snip/shuffle``, ``snip@t=1000``); columns are sparsities in percent;
    cells are ``mean±std`` in percent, with ``nK`` when the cell has fewer ok seeds than the
    block's most common count, ``Kdisc`` for seeds whose mask cut every input→output path (in
    the mean: trained to chance), and ``Kdiv`` / ``Kfail`` for diverged and failed runs. The
    last column counts the row's runs.

    Args:
        summary: The table from :func:`summarize` with the default grouping.

    Returns:
        The text, ending in a newline; an empty summary gives a one-line note.
    """
    check_summary(summary)
    if summary.empty:
        return "no results\n"
    blocks = []
    for (model, dataset), rows in summary.groupby(["model", "dataset"], sort=False):
        blocks.append(_block(setting_label(model, dataset), rows))
    return "\n".join(blocks)


def _block(title: str, rows: pd.DataFrame) -> str:
    labels = sparsity_labels(rows["sparsity"].tolist())
    columns = sorted(labels)
    counts = rows.loc[rows["n"] > 0, "n"].value_counts()
    modal = int(max(counts.index, key=lambda k: (counts[k], k))) if len(counts) else 0
    table: list[list[str]] = [["method", *(labels[s] for s in columns), "runs"]]
    keys = ["method", "ablation", "prune_step"]
    for (method, ablation, step), part in rows.groupby(keys, sort=False):
        name = method + ("" if ablation == "none" else f"/{ablation}")
        name += f"@t={int(step)}" if step else ""
        by_sparsity = {float(r["sparsity"]): r for _, r in part.iterrows()}
        cells = [_cell(by_sparsity.get(s), modal) for s in columns]
        table.append([name, *cells, _runs(part)])
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = [f"{title}   (test accuracy %, mean±std over seeds; columns: sparsity %)"]
    for row in table:
        first = row[0].ljust(widths[0])
        cells = [cell.rjust(w) for cell, w in zip(row[1:-1], widths[1:-1], strict=True)]
        lines.append("  ".join([first, *cells, row[-1]]).rstrip())
    return "\n".join(lines) + "\n"


def _cell(row: pd.Series | None, modal: int) -> str:
    if row is None:
        return ""
    n, mean, std = int(row["n"]), float(row["mean"]), float(row["std"])
    if n == 0 or math.isnan(mean):
        text = "—"
    elif math.isnan(std):
        text = f"{100 * mean:.1f}"
    else:
        text = f"{100 * mean:.1f}±{100 * std:.1f}"
    notes = [f"n{n}"] if 0 < n < modal else []
    cut = int(row.get("n_disconnected", 0))
    notes += [f"{cut}disc"] if cut else []
    notes += [f"{int(row['n_diverged'])}div"] if row["n_diverged"] else []
    notes += [f"{int(row['n_failed'])}fail"] if row["n_failed"] else []
    return f"{text} ({','.join(notes)})" if notes else text


def _runs(part: pd.DataFrame) -> str:
    ok, div, fail = (int(part[c].sum()) for c in ("n", "n_diverged", "n_failed"))
    cut = int(part["n_disconnected"].sum()) if "n_disconnected" in part.columns else 0
    text = f"{ok - cut} ok" + (f", {cut} disc" if cut else "")
    text += f", {div} div" if div else ""
    text += f", {fail} fail" if fail else ""
    return text
