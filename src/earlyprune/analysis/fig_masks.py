"""Mask-structure figures: neuron collapse (paper Figure 6) and per-layer density (Figure 11).

Both describe the mask rather than training, so every run that recorded them counts, diverged
ones included.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from earlyprune.analysis import plotting as P
from earlyprune.analysis.aggregate import focus_sparsity, unmodified
from earlyprune.analysis.fig_context import Setting, titled, variant_label
from earlyprune.analysis.layer_density import at_focus

Drawn = tuple[Figure, str] | None
_SHOWN = ("none", "shuffle")  # the paper shows each method and SynFlow shuffled


def collapse(ctx: Setting) -> Drawn:
    """Figure 6: channels pruned entirely vs sparsity; and ≥ s % pruned at one sparsity."""
    rows = ctx.at_main_step(ctx.rows)
    rows = rows[rows["ablation"].isin(_SHOWN) & (rows["method"] != "dense")]
    rows = rows[rows["collapse_100"].notna()]
    if rows.empty:
        return None
    shares = ctx.at_main_step(ctx.per_run(ctx.data.collapse))
    shares = shares[shares["ablation"].isin(_SHOWN) & (shares["method"] != "dense")]
    shares = shares[shares["sparsity"] > 0]
    if not rows["collapse_100"].any() and not shares["share"].any():
        return None  # no channel reached any threshold in any run: an all-zero figure says nothing
    panels = 2 if not shares.empty else 1
    fig, axes = P.new_figure(6.0 * panels + 1.8, 4.6, 1, panels)
    for (method, ablation), sub in ctx.variants(rows):
        P.plot_band(
            axes[0],
            P.density_x(sub["sparsity"]),
            sub.assign(mean=sub["collapse_100"], std=np.nan),
            label=variant_label(method, ablation),
            color=ctx.color(method),
            linestyle="-" if ablation == "none" else "--",
        )
    P.sparsity_axis(axes[0], [*rows["sparsity"], 0.0])
    axes[0].set_ylabel("Conv channels pruned entirely (%)")
    titled(axes[0], "Channels with every weight pruned")
    axes[0].grid(alpha=0.3)
    if panels == 2:
        _thresholds(ctx, axes[1], shares)
    P.legend_outside(axes[-1])
    fig.suptitle(f"{ctx.title}: neuron collapse")
    second = ", and pruned to at least s % at one sparsity" if panels == 2 else ""
    return fig, f"Share of conv channels pruned entirely{second} (Figure 6)."


def _thresholds(ctx: Setting, ax: Axes, shares: pd.DataFrame) -> None:
    available = {
        f"{m}/{a}": set(g["sparsity"]) for (m, a), g in shares.groupby(["method", "ablation"])
    }
    sparsity, why = focus_sparsity(available, ctx.matching)
    at = shares[np.isclose(shares["sparsity"], sparsity)]
    thresholds = sorted(at["threshold"].unique())
    position = {t: i for i, t in enumerate(thresholds)}
    mean = at.groupby(["method", "ablation", "threshold"])["share"].mean().reset_index()
    for (method, ablation), sub in ctx.variants(mean):
        ax.plot(
            [position[t] for t in sub["threshold"]],
            100 * sub["share"],
            marker="o",
            markersize=4,
            color=ctx.color(method),
            linestyle="-" if ablation == "none" else "--",
            label=variant_label(method, ablation),
        )
    ax.set_xticks(range(len(thresholds)), [f"≥ {100 * t:g}%" for t in thresholds])
    ax.set_xlabel("Sparsity of the channel's weights")
    ax.set_ylabel("Conv channels (%)")
    titled(ax, "Channels pruned to at least s %", f"at sparsity {100 * sparsity:.1f}% ({why})")
    ax.grid(alpha=0.3)


def layer_label(name: str, numel: object) -> str:
    """``conv1 (400)``: the module path and its weight count (just the path if unknown)."""
    path = name.removesuffix(".weight")
    try:
        return f"{path} ({int(numel):,})"  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return path


def layers(ctx: Setting) -> Drawn:
    """Figure 11: the share of each layer's weights that each method keeps, at one sparsity."""
    # The same layers and sparsity as the numbers in the page (layer_density.layer_html).
    found = at_focus(ctx.at_main_step(unmodified(ctx.per_run(ctx.data.layers))), ctx.matching)
    if found is None:
        return None
    at, sparsity, why = found
    names = list(at.groupby("layer")["order"].min().sort_values().index)
    methods = ctx.methods(at)
    mean = at.groupby(["method", "layer"])["density"].mean()
    width = min(40.0, max(8.0, 0.22 * len(names) * max(1.0, len(methods) ** 0.5) + 3))
    fig, (ax,) = P.new_figure(width, 5.0)
    bar = 0.8 / len(methods)
    xs = np.arange(len(names))
    for i, method in enumerate(methods):
        values = [100 * mean.get((method, layer), np.nan) for layer in names]
        offset = (i - (len(methods) - 1) / 2) * bar
        label = ctx.label(method, at[at["method"] == method])
        ax.bar(xs + offset, values, bar, color=ctx.color(method), label=label)
    numel = at.groupby("layer")["numel"].first()
    short = [layer_label(n, numel.get(n)) for n in names]
    ax.set_xticks(xs, short, rotation=90 if len(names) > 4 else 0, fontsize=7)
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylabel("Weights remaining in the layer (%)")
    ax.set_xlabel("Layer: module path (weights), input → output")
    titled(ax, f"{ctx.title}: per-layer density", f"at sparsity {100 * sparsity:.1f}% ({why})")
    ax.grid(alpha=0.3, axis="y")
    P.legend_outside(ax)
    return fig, "Share of each layer's weights kept by each method (Figure 11)."
