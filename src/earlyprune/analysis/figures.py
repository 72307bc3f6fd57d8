"""The paper's figures for each (model, dataset), each drawn only when its data exists.

=================  ================================  ============
file kind          what                              paper
=================  ================================  ============
``accuracy``       accuracy vs sparsity per method   Figure 4
``ablations``      per-method ablation panels        Figure 5
``grasp_variants`` GraSP, inverted, GraSP magnitude  Figure 9
``collapse``       conv channels pruned entirely     Figure 6
``prune_step``     accuracy vs pruning step t        Figure 7
``layers``         per-layer density per method      Figure 11
=================  ================================  ============

Files are named ``fig_<kind>_<model>_<dataset>.png``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from earlyprune.analysis import fig_curves, fig_masks
from earlyprune.analysis.fig_context import Setting
from earlyprune.analysis.load import StoreData
from earlyprune.analysis.names import file_slug
from earlyprune.analysis.plotting import save_png

DRAW: dict[str, Callable[[Setting], tuple[Figure, str] | None]] = {
    "accuracy": fig_curves.accuracy,
    "ablations": fig_curves.ablations,
    "grasp_variants": fig_curves.grasp_variants,
    "collapse": fig_masks.collapse,
    "prune_step": fig_curves.prune_step,
    "layers": fig_masks.layers,
}


@dataclass(frozen=True)
class FigureFile:
    """A written figure: its file name (relative to the report folder), kind and caption."""

    name: str
    kind: str
    caption: str


def make_figures(
    data: StoreData,
    summary: pd.DataFrame,
    matching: dict[tuple[str, str], float | None],
    out_dir: Path,
) -> dict[tuple[str, str], list[FigureFile]]:
    """Draws and saves (atomically) every figure whose data exists, per (model, dataset).

    Args:
        data: The store's tables, from :func:`load_store`.
        summary: ``summarize(data.results)``.
        matching: ``matching_sparsity(summary, ...)``: where set, the figures that compare
            methods at one sparsity use it.
        out_dir: An existing folder to write the PNG files to.

    Returns:
        The figures written for each (model, dataset), in the order of the table above.
    """
    runs = data.results.set_index("run_id")
    written: dict[tuple[str, str], list[FigureFile]] = {}
    for (model, dataset), rows in summary.groupby(["model", "dataset"], sort=False):
        ctx = Setting(model, dataset, rows, matching.get((model, dataset)), data, runs)
        files = []
        for kind, draw in DRAW.items():
            drawn = draw(ctx)
            if drawn is None:
                continue
            fig, caption = drawn
            name = f"fig_{kind}_{file_slug(model, dataset)}.png"
            save_png(fig, out_dir / name)
            files.append(FigureFile(name, kind, caption))
        written[(model, dataset)] = files
    return written
