"""Per-layer densities as numbers: ``layer_density.csv`` and a table in ``index.html``.

The per-layer density figure (paper Figure 11) shows them as bars; here they are numbers, each
row labelled by the layer's name: the prunable parameter (``layer1.0.conv1.weight``) and its
module path (``layer1.0.conv1``). A mask's densities do not depend on how training went, so
every run that recorded them counts, whatever its status (as in the figure).
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from earlyprune.analysis.aggregate import focus_sparsity, main_rows, unmodified
from earlyprune.analysis.load import StoreData
from earlyprune.analysis.names import ABLATION_ORDER, METHOD_ORDER, method_label, ordered, rank

LAYER_CSV = "layer_density.csv"
#: The columns of ``layer_density.csv`` (densities are fractions, as in ``results.csv``).
CSV_COLUMNS = (
    "model",
    "dataset",
    "method",
    "ablation",
    "prune_step",
    "sparsity",
    "layer",
    "module",
    "numel",
    "runs",
    "density",
    "density_std",
    "effective_density",
)
_SPEC = ["model", "dataset", "method", "ablation", "prune_step", "sparsity"]


def per_run_layers(data: StoreData) -> pd.DataFrame:
    """``data.layers`` joined with each run's setting and method (one row per run × layer)."""
    runs = data.results.set_index("run_id")[[*_SPEC, "status"]]
    return data.layers.join(runs, on="run_id", how="inner")


def main_layers(data: StoreData, rows: pd.DataFrame) -> pd.DataFrame:
    """Per-run layer rows of one setting, unmodified, each method at its main prune step.

    Args:
        data: The store's tables.
        rows: The setting's summary rows (they decide each method's main step, as in the
            figures: its lowest step with unmodified runs).
    """
    if rows.empty:
        return per_run_layers(data).iloc[0:0]
    model, dataset = rows["model"].iloc[0], rows["dataset"].iloc[0]
    joined = per_run_layers(data)
    joined = joined[(joined["model"] == model) & (joined["dataset"] == dataset)]
    joined = unmodified(joined)
    steps = main_rows(unmodified(rows)).groupby("method")["prune_step"].first()
    return joined[joined["prune_step"] == joined["method"].map(steps)]


def layer_density_frame(data: StoreData) -> pd.DataFrame:
    """Mean per-layer density over runs, one row per (setting, method, ablation, step, sparsity,
    layer), in the columns of :data:`CSV_COLUMNS`; layers in network order, known methods first.

    ``density_std`` is the sample standard deviation over runs (empty for a single run);
    ``effective_density`` is empty where no run recorded it.
    """
    joined = per_run_layers(data)
    joined = joined[joined["method"] != "dense"]
    if joined.empty:
        return pd.DataFrame(columns=list(CSV_COLUMNS))
    grouped = joined.groupby([*_SPEC, "layer"], sort=False, dropna=False)
    frame = grouped.agg(
        order=("order", "min"),
        numel=("numel", "first"),
        runs=("run_id", "nunique"),
        density=("density", "mean"),
        density_std=("density", "std"),
        effective_density=("effective_density", "mean"),
    ).reset_index()
    frame["module"] = frame["layer"].str.removesuffix(".weight")
    frame["numel"] = frame["numel"].astype("Int64")
    keys = frame.assign(
        _method=frame["method"].map(lambda m: rank(m, METHOD_ORDER)),
        _ablation=frame["ablation"].map(lambda a: rank(a, ABLATION_ORDER)),
    )
    by = ["model", "dataset", "_method", "_ablation", "prune_step", "sparsity", "order"]
    keys = keys.sort_values(by, kind="stable")
    return keys[list(CSV_COLUMNS)].reset_index(drop=True)


def at_focus(
    layers: pd.DataFrame, matching: float | None
) -> tuple[pd.DataFrame, float, str] | None:
    """The rows at the one sparsity where methods are compared layer by layer, and why that one.

    Args:
        layers: Per-run (or per-group) layer rows of one setting: unmodified, each method at its
            main prune step.
        matching: The setting's matching sparsity, if any (see :func:`focus_sparsity`).

    Returns:
        ``(rows at that sparsity, sparsity, reason)``, or None without pruned layer data.
    """
    layers = layers[(layers["method"] != "dense") & (layers["sparsity"] > 0)]
    if layers.empty:
        return None
    available = {m: set(g["sparsity"]) for m, g in layers.groupby("method")}
    sparsity, why = focus_sparsity(available, matching)
    return layers[np.isclose(layers["sparsity"], sparsity)], sparsity, why


def layer_html(layers: pd.DataFrame, matching: float | None, csv_name: str) -> str:
    """One setting's per-layer densities at the figure's sparsity, as an HTML table.

    Rows are layers in network order (module path and weight count), columns are methods;
    cells are the % of the layer's weights kept, mean over seeds. Empty (``""``) without data.

    Args:
        layers: Per-run layer rows of one setting, unmodified, each method at its main step.
        matching: The setting's matching sparsity, if any.
        csv_name: The CSV holding every sparsity and ablation (named in the caption).
    """
    found = at_focus(layers, matching)
    if found is None:
        return ""
    at, sparsity, why = found
    names = list(at.groupby("layer")["order"].min().sort_values().index)
    methods = ordered(at["method"], METHOD_ORDER)
    mean = at.groupby(["method", "layer"])["density"].mean()
    numel = at.groupby("layer")["numel"].first()
    esc = html.escape
    head = "".join(f'<th scope="col">{esc(method_label(m))}</th>' for m in methods)
    body = []
    for layer in names:
        count = numel.get(layer)
        weights = "—" if count is None or pd.isna(count) else f"{int(count):,}"
        cells = []
        for m in methods:
            value = mean.get((m, layer), np.nan)
            cells.append("<td>—</td>" if pd.isna(value) else f"<td>{100 * value:.1f}</td>")
        body.append(
            f'<tr><th scope="row" title="{esc(layer)}"><code>'
            f"{esc(layer.removesuffix('.weight'))}</code></th><td>{weights}</td>{''.join(cells)}"
            "</tr>"
        )
    caption = (
        f"Per-layer density at sparsity {100 * sparsity:.1f}% ({why}): % of each layer's "
        "weights kept, unmodified masks, mean over seeds; every sparsity and ablation in "
    )
    return (
        f'<table class="layers">\n<caption>{esc(caption)}<a href="{esc(csv_name)}">'
        f"{esc(csv_name)}</a></caption>\n"
        f'<thead><tr><th scope="col">Layer (module)</th><th scope="col">Weights</th>{head}'
        "</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>\n"
    )
