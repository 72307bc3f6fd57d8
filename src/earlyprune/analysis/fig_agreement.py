"""Mask agreement as a heatmap (numbers from :mod:`.agreement`)."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure

from earlyprune.analysis import plotting as P
from earlyprune.analysis.agreement import Agreement
from earlyprune.analysis.fig_context import Setting, titled
from earlyprune.analysis.names import method_label

Drawn = tuple[Figure, str] | None


def agreement(ctx: Setting) -> Drawn:
    """Jaccard overlap between methods (same seeds) and across one method's seeds (diagonal)."""
    found: Agreement | None = ctx.agreement
    if found is None or len(found.jaccard) < 2 and found.jaccard.isna().all().all():
        return None
    names = [method_label(m) for m in found.jaccard.index]
    values = found.jaccard.to_numpy(float)
    side = 1.2 + 0.55 * len(names)
    fig, (ax,) = P.new_figure(side + 2.2, side + 0.6)
    image = ax.imshow(np.ma.masked_invalid(values), vmin=0.0, vmax=1.0, cmap="viridis")
    for i in range(len(names)):
        for j in range(len(names)):
            if not math.isnan(values[i, j]):
                color = "white" if values[i, j] < 0.6 else "black"
                ax.text(
                    j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=7, color=color
                )
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    fig.colorbar(image, ax=ax, label="Jaccard overlap of kept weights")
    titled(
        ax,
        f"{ctx.title}: mask agreement",
        f"at sparsity {100 * found.sparsity:.1f}% ({found.why}); random masks: {found.chance:.2f}",
    )
    return fig, (
        "Jaccard overlap of the kept weights: off the diagonal two methods on the same seeds, on "
        f"the diagonal one method across its seeds; two independent random masks of this density "
        f"overlap {found.chance:.3f} in expectation."
    )
