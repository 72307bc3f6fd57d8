"""The paper's figures for each (model, dataset), each drawn only when its data exists.

=================  ================================  ============
file kind          what                              paper
=================  ================================  ============
``accuracy``       accuracy vs sparsity per method   Figure 4
``flops``          accuracy vs forward multiply-adds —
``ablations``      per-method ablation panels        Figure 5
``grasp_variants`` GraSP, inverted, GraSP magnitude  Figure 9
``collapse``       conv channels pruned entirely     Figure 6
``prune_step``     accuracy vs pruning step t        Figure 7
``layers``         per-layer density per method      Figure 11
``agreement``      Jaccard overlap of masks          —
=================  ================================  ============

Files are named ``fig_<kind>_<model>_<dataset>.png``, each with a vector ``.pdf`` beside it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from earlyprune.analysis import fig_agreement, fig_cost, fig_curves, fig_masks
from earlyprune.analysis.fig_context import Setting
from earlyprune.analysis.load import StoreData
from earlyprune.analysis.names import file_slug
from earlyprune.analysis.plotting import save_pdf, save_png

DRAW: dict[str, Callable[[Setting], tuple[Figure, str] | None]] = {
    "accuracy": fig_curves.accuracy,
    "flops": fig_cost.accuracy_vs_flops,
    "ablations": fig_curves.ablations,
    "grasp_variants": fig_curves.grasp_variants,
    "collapse": fig_masks.collapse,
    "prune_step": fig_curves.prune_step,
    "layers": fig_masks.layers,
    "agreement": fig_agreement.agreement,
}


@dataclass(frozen=True)
class FigureFile:
    """A written figure: its file name (relative to the report folder), kind and caption."""

    name: str
    kind: str
    caption: str

    @property
    def pdf(self) -> str:
        """The vector copy's file name."""
        return self.name.removesuffix(".png") + ".pdf"


def make_figures(
    data: StoreData,
    summary: pd.DataFrame,
    matching: dict[tuple[str, str], float | None],
    out_dir: Path,
    *,
    edges: dict[tuple[str, str], bool] | None = None,
    free_y: bool = False,
    agreements: dict[tuple[str, str], Any] | None = None,
) -> dict[tuple[str, str], list[FigureFile]]:
    """Draws and saves (atomically) every figure whose data exists, per (model, dataset).

    Args:
        data: The store's tables, from :func:`load_store`.
        summary: ``summarize(data.results)``.
        matching: ``matching_sparsity(summary, ...)``: where set, the figures that compare
            methods at one sparsity use it.
        out_dir: An existing folder to write the PNG and PDF files to.
        edges: For each setting, whether its matching sparsity is the highest one run (the
            figures then read "≥").
        free_y: Give each ablation panel its own y-range instead of one shared range.
        agreements: Each setting's mask agreement (:func:`mask_agreement`), where computed.

    Returns:
        The figures written for each (model, dataset), in the order of the table above.
    """
    runs = data.results.set_index("run_id")
    written: dict[tuple[str, str], list[FigureFile]] = {}
    for (model, dataset), rows in summary.groupby(["model", "dataset"], sort=False):
        key = (model, dataset)
        edge = bool((edges or {}).get(key, False))
        agreement = (agreements or {}).get(key)
        ctx = Setting(model, dataset, rows, matching.get(key), data, runs, edge, free_y, agreement)
        files = []
        for kind, draw in DRAW.items():
            drawn = draw(ctx)
            if drawn is None:
                continue
            fig, caption = drawn
            name = f"fig_{kind}_{file_slug(model, dataset)}.png"
            save_png(fig, out_dir / name)
            save_pdf(fig, out_dir / FigureFile(name, kind, caption).pdf)
            files.append(FigureFile(name, kind, caption))
        written[(model, dataset)] = files
    return written
