"""A self-contained report folder: CSVs, Markdown/LaTeX tables, PNG figures and ``index.html``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from earlyprune.analysis.aggregate import matching_sparsity, summarize
from earlyprune.analysis.agreement import (
    Agreement,
    mask_agreement,
    torch_available,
)
from earlyprune.analysis.files import atomic_write_text
from earlyprune.analysis.index_page import index_html, matching_edges, matching_text
from earlyprune.analysis.layer_density import (
    LAYER_CSV,
    layer_density_frame,
)
from earlyprune.analysis.load import StoreData, load_store
from earlyprune.analysis.speed_table import speed_frame, speed_html
from earlyprune.analysis.tables import build_grids, tables
from earlyprune.core.errors import StoreError

# matching_edges and matching_text: re-exported (defined here before index_page.py).
__all__ = ["matching_edges", "matching_text", "write_report"]


def write_report(
    store: str | Path,
    out_dir: str | Path,
    *,
    tolerance: float = 0.005,
    reference: str = "magnitude_after_training",
    free_y: bool = False,
) -> Path:
    """Writes the paper's tables and figures for every (model, dataset) in a store.

    Files written to ``out_dir`` (each atomically: a temporary file in the same folder, then a
    rename): ``results.csv`` (one row per run), ``summary.csv`` (mean ± std per setting),
    ``tables.md``, ``tables.tex``, ``layer_density.csv`` (per-layer density per method,
    ablation, prune step and sparsity, rows labelled by layer; when runs recorded it),
    ``fig_<kind>_<model>_<dataset>.png`` and ``.pdf`` for each figure whose data exists, ``agreement.csv`` (mask overlap, when torch can read the stored
    masks), ``speed.csv`` (runs measured by ``earlyprune speed``), and ``index.html``, which shows them all, with the sanity-check verdicts first, and
    opens without a server. Figures from an earlier report that no longer have data are removed.

    Args:
        store: The run store to read (only its ``result.json`` files are used).
        out_dir: The report folder, created if needed.
        tolerance: Largest accuracy drop (a fraction) that still counts as matching the dense
            network; see :func:`matching_sparsity`.
        reference: The benchmark method whose matching sparsity is reported and marked.
        free_y: Give each ablation panel its own y-range (default: one range per figure).

    Returns:
        The path of ``index.html``.

    Raises:
        StoreError: The store holds no results, or ``out_dir`` cannot be written.
    """
    # Imported here so that reading results and printing summaries never pays for matplotlib.
    from earlyprune.analysis.figures import make_figures

    data = load_store(store)
    out = _prepare(Path(out_dir).expanduser())
    summary = summarize(data.results)
    matching = matching_sparsity(summary, method=reference, tolerance=tolerance)
    rendered = tables(summary)
    atomic_write_text(out / "results.csv", data.results.to_csv(index=False))
    atomic_write_text(out / "summary.csv", summary.to_csv(index=False))
    atomic_write_text(out / "tables.md", rendered["markdown"])
    atomic_write_text(out / "tables.tex", rendered["latex"])
    layer_frame = layer_density_frame(data)
    if layer_frame.empty:
        (out / LAYER_CSV).unlink(missing_ok=True)
    else:
        atomic_write_text(out / LAYER_CSV, layer_frame.to_csv(index=False))
    edges = matching_edges(summary, matching, reference)
    agreements = _agreements(data, out)
    figures = make_figures(
        data, summary, matching, out, edges=edges, free_y=free_y, agreements=agreements
    )
    written = {n for files in figures.values() for f in files for n in (f.name, f.pdf)}
    for old in [*out.glob("fig_*.png"), *out.glob("fig_*.pdf")]:
        if old.name not in written:
            old.unlink(missing_ok=True)
    layers = not layer_frame.empty
    grids = build_grids(summary)
    speed = speed_frame(data.store, data.results)
    if speed.empty:
        (out / "speed.csv").unlink(missing_ok=True)
    else:
        atomic_write_text(out / "speed.csv", speed.to_csv(index=False))
    page = index_html(
        data,
        summary,
        matching,
        figures,
        grids,
        reference,
        tolerance,
        agreements,
        layers,
        speed_html(speed),
    )
    return atomic_write_text(out / "index.html", page)


def _agreements(data: StoreData, out: Path) -> dict[tuple[str, str], Agreement | None] | None:
    """Mask agreement per setting, and ``agreement.csv``; None when torch is absent."""
    if not torch_available():
        (out / "agreement.csv").unlink(missing_ok=True)
        return None
    found: dict[tuple[str, str], Agreement | None] = {}
    frames = []
    for (model, dataset), runs in data.results.groupby(["model", "dataset"], sort=False):
        found[(model, dataset)] = agreement = mask_agreement(data.store, runs)
        if agreement is not None:
            long = agreement.jaccard.stack(future_stack=True).rename("jaccard").reset_index()
            long.columns = ["method_a", "method_b", "jaccard"]
            long["pairs"] = agreement.pairs.stack().to_numpy()
            frames.append(long.assign(model=model, dataset=dataset, sparsity=agreement.sparsity))
    if frames:
        atomic_write_text(out / "agreement.csv", pd.concat(frames).to_csv(index=False))
    return found


def _prepare(out: Path) -> Path:
    if out.exists() and not out.is_dir():
        raise StoreError(f"report folder {str(out)!r} is a file; choose a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create report folder {str(out)!r}: {exc.strerror}") from None
    return out
