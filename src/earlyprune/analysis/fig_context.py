"""What every figure of one (model, dataset) needs: its rows, references, colours and labels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
from matplotlib.axes import Axes

from earlyprune.analysis.aggregate import dense_reference, main_rows, unmodified
from earlyprune.analysis.load import StoreData
from earlyprune.analysis.names import (
    METHOD_COLORS,
    METHOD_ORDER,
    ablation_label,
    color_for,
    method_label,
    ordered,
    setting_label,
)


@dataclass
class Setting:
    """One (model, dataset): its summary rows, matching sparsity and the per-run tables."""

    model: str
    dataset: str
    rows: pd.DataFrame  # this setting's summary rows
    matching: float | None
    data: StoreData
    runs: pd.DataFrame  # all runs, indexed by run_id
    matching_edge: bool = False  # the matching sparsity is the highest one run ("≥")
    free_y: bool = False  # ablation panels each get their own y-range
    agreement: Any = None  # this setting's mask agreement (analysis.agreement), if computed

    @property
    def matching_text(self) -> str:
        """``48.8%`` or ``≥ 93.1%`` (see :attr:`matching_edge`)."""
        prefix = "≥ " if self.matching_edge else ""
        return "" if self.matching is None else f"{prefix}{100 * self.matching:.1f}%"

    @property
    def title(self) -> str:
        return setting_label(self.model, self.dataset)

    @property
    def dense(self) -> pd.Series | None:
        return dense_reference(self.rows)

    def own_dense(self, ablation: str) -> pd.Series | None:
        """The dense runs of ``ablation`` when it has its own (init N(0, 1)), else None.

        An ablation that changes the dense network itself (``init_normal``) has dense runs
        labelled with it; any other ablation is compared with the unmodified dense network.
        """
        own = self.rows[(self.rows["method"] == "dense") & (self.rows["ablation"] == ablation)]
        if ablation != "none" and not own.empty:
            return own.iloc[0]
        return None

    @property
    def main(self) -> pd.DataFrame:
        """Unmodified rows, each method at its lowest prune step, without the dense row."""
        main = main_rows(unmodified(self.rows))
        return main[main["method"] != "dense"]

    def methods(self, rows: pd.DataFrame) -> list[str]:
        return ordered(rows["method"], METHOD_ORDER)

    def color(self, method: str) -> str:
        return color_for(method, METHOD_COLORS, self.methods(self.rows))

    def label(self, method: str, rows: pd.DataFrame) -> str:
        """``SNIP``, or ``LTR (t=1000)`` for a method recorded only after some training."""
        step = int(rows["prune_step"].min()) if len(rows) else 0
        return method_label(method) + (f" (t={step})" if step else "")

    def per_run(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Joins a per-run table (layers, collapse, curves) with its runs' spec, for this setting."""
        keep = ["model", "dataset", "method", "ablation", "prune_step", "sparsity", "status"]
        joined = frame.join(self.runs[keep], on="run_id", how="inner")
        return joined[(joined["model"] == self.model) & (joined["dataset"] == self.dataset)]

    def at_main_step(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Rows at each method's main prune step (see :func:`main_rows`)."""
        steps = main_rows(unmodified(self.rows)).groupby("method")["prune_step"].first()
        return frame[frame["prune_step"] == frame["method"].map(steps)]

    def variants(self, rows: pd.DataFrame) -> list[tuple[tuple[str, str], pd.DataFrame]]:
        """(method, ablation) groups for ``none`` and ``shuffle``, methods in order."""
        out = []
        for method in self.methods(rows):
            for ablation in ("none", "shuffle"):
                sub = rows[(rows["method"] == method) & (rows["ablation"] == ablation)]
                if not sub.empty:
                    out.append(((method, ablation), sub))
        return out


def variant_label(method: str, ablation: str) -> str:
    """``SynFlow`` or ``SynFlow (shuffled layerwise)``."""
    label = method_label(method)
    return label if ablation == "none" else f"{label} ({ablation_label(ablation).lower()})"


def titled(ax: Axes, title: str, detail: str = "") -> None:
    """A title with an optional second, smaller-looking line of detail."""
    ax.set_title(f"{title}\n{detail}" if detail else title, fontsize=11)
