"""Accuracy vs compute: test accuracy against the pruned network's forward multiply-adds.

Weight counts alone hide where the weights are: a mask that keeps the early convolutions costs far
more compute than one that keeps the same number of weights in the linear layers. The x axis is
the theoretical forward multiply-adds (``flops`` in ``result.json``) as a share of the dense
network's, on a log scale; results without a count are left out.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

from earlyprune.analysis import plotting as P
from earlyprune.analysis.fig_context import Setting, titled
from earlyprune.analysis.names import REFERENCE_METHODS

Drawn = tuple[Figure, str] | None


def accuracy_vs_flops(ctx: Setting) -> Drawn:
    """Every method's accuracy vs its FLOPs (% of dense), with the dense reference."""
    main = ctx.main
    main = main[main["mean"].notna() & main["flops_fraction"].notna() & (main["sparsity"] > 0)]
    main = main[main["flops_fraction"] > 0]
    if main.empty:
        return None
    fig, (ax,) = P.new_figure(8.0, 4.8)
    for method in ctx.methods(main):
        rows = main[main["method"] == method]
        reference = method in REFERENCE_METHODS
        P.plot_band(
            ax,
            rows["flops_fraction"].to_numpy(float),
            rows,
            label=ctx.label(method, rows),
            color=ctx.color(method),
            linestyle="--" if reference else "-",
        )
    P.dense_line(ax, ctx.dense)
    ax.set_xscale("log")
    ax.invert_xaxis()  # less compute to the right, like sparsity in the other figures
    ticks = sorted({float(f) for f in main["flops_fraction"]})
    if len(ticks) > 10:
        ticks = list(np.geomspace(min(ticks), max(ticks), 8))
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FixedFormatter([f"{100 * t:.3g}" for t in ticks]))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.tick_params(axis="x", labelrotation=45, labelsize=8)
    ax.set_xlabel("Forward multiply-adds of the pruned network (% of dense)  [log scale]")
    ax.set_ylabel("Test accuracy (%)")
    titled(ax, f"{ctx.title}: accuracy vs compute")
    ax.grid(alpha=0.3)
    P.legend_outside(ax)
    return fig, (
        "Test accuracy vs theoretical forward multiply-adds (conv: kept weights × output "
        "positions; linear: kept weights), mean ± std over seeds."
    )
