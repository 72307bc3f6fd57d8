"""The paper's figures for one (model, dataset), each drawn only when its data exists.

Figure 4 → ``fig_accuracy``, 5 → ``fig_ablations``, 9 → ``fig_grasp_variants``,
6 → ``fig_collapse``, 7 → ``fig_prune_step``, 11 → ``fig_layers``
(files ``fig_<kind>_<model>_<dataset>.png``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from earlyprune.analysis import plotting as P
from earlyprune.analysis.aggregate import dense_reference, focus_sparsity, main_rows, unmodified
from earlyprune.analysis.load import StoreData
from earlyprune.analysis.names import (
    ABLATION_COLORS,
    ABLATION_ORDER,
    METHOD_COLORS,
    METHOD_ORDER,
    ablation_label,
    color_for,
    file_slug,
    method_label,
    ordered,
    setting_label,
)
from earlyprune.analysis.tables import ablation_free_methods, step_methods

FIGURE_KINDS = ("accuracy", "ablations", "grasp_variants", "collapse", "prune_step", "layers")
GRASP_VARIANTS = (
    ("grasp", "none", "GraSP (remove highest scores; original)"),
    ("grasp", "invert", "GraSP inverted (remove lowest scores)"),
    ("grasp_magnitude", "none", "GraSP magnitude (remove lowest |score|)"),
)


@dataclass(frozen=True)
class FigureFile:
    """A written figure: its file (relative to the report folder) and a caption."""

    name: str
    kind: str
    caption: str


def make_figures(
    data: StoreData,
    summary: pd.DataFrame,
    matching: dict[tuple[str, str], float | None],
    out_dir: Path,
) -> dict[tuple[str, str], list[FigureFile]]:
    """Draws and saves every figure whose data exists, per (model, dataset)."""
    runs = data.results.set_index("run_id")
    written: dict[tuple[str, str], list[FigureFile]] = {}
    for (model, dataset), rows in summary.groupby(["model", "dataset"], sort=False):
        ctx = _Setting(model, dataset, rows, matching.get((model, dataset)), data, runs)
        files = []
        for kind in FIGURE_KINDS:
            drawn = _DRAW[kind](ctx)
            if drawn is None:
                continue
            fig, caption = drawn
            name = f"fig_{kind}_{file_slug(model, dataset)}.png"
            P.save_png(fig, out_dir / name)
            files.append(FigureFile(name, kind, caption))
        written[(model, dataset)] = files
    return written


@dataclass
class _Setting:
    model: str
    dataset: str
    rows: pd.DataFrame  # this setting's summary rows
    matching: float | None
    data: StoreData
    runs: pd.DataFrame  # all runs, indexed by run_id

    @property
    def title(self) -> str:
        return setting_label(self.model, self.dataset)

    @property
    def dense(self) -> pd.Series | None:
        return dense_reference(self.rows)

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
        step = int(rows["prune_step"].min()) if len(rows) else 0
        return method_label(method) + (f" (t={step})" if step else "")

    def per_run(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Joins a per-run table (layers, collapse, curves) with its runs' spec, for this setting."""
        keep = ["model", "dataset", "method", "ablation", "prune_step", "sparsity", "status"]
        joined = frame.join(self.runs[keep], on="run_id", how="inner")
        return joined[(joined["model"] == self.model) & (joined["dataset"] == self.dataset)]

    def at_main_step(self, frame: pd.DataFrame) -> pd.DataFrame:
        steps = main_rows(unmodified(self.rows)).groupby("method")["prune_step"].first()
        return frame[frame["prune_step"] == frame["method"].map(steps)]


def _accuracy(ctx: _Setting) -> tuple | None:
    main = ctx.main
    if main["mean"].notna().sum() == 0:
        return None
    fig, (ax,) = P.new_figure(8.0, 4.8)
    for method in ctx.methods(main):
        rows = main[main["method"] == method]
        style = "--" if method == "random" else "-"
        label = ctx.label(method, rows)
        P.plot_band(
            ax, P.density_x(rows["sparsity"]), rows, label=label, color=ctx.color(method),
            linestyle=style,
        )
    P.dense_line(ax, ctx.dense)
    _matching_line(ctx, ax)
    P.sparsity_axis(ax, [*main["sparsity"], 0.0])
    ax.set_ylabel("Test accuracy (%)")
    ax.set_title(f"{ctx.title}: accuracy after pruning at initialization")
    ax.grid(alpha=0.3)
    P.legend_outside(ax)
    return fig, "Test accuracy vs sparsity, mean ± std over seeds (paper Figure 4)."


def _ablations(ctx: _Setting) -> tuple | None:
    rows = ctx.rows[~ctx.rows["method"].isin(ablation_free_methods(ctx.rows))]
    rows = ctx.at_main_step(rows)
    methods = [m for m in ctx.methods(rows) if rows.loc[rows["method"] == m, "mean"].notna().any()]
    if not methods:
        return None
    ncols = 2 if len(methods) == 4 else min(len(methods), 3)
    nrows = math.ceil(len(methods) / ncols)
    fig, axes = P.new_figure(4.6 * ncols, 3.6 * nrows + 0.6, nrows, ncols)
    for ax, method in zip(axes, methods, strict=False):
        part = rows[rows["method"] == method]
        ablations = ordered(part["ablation"], ABLATION_ORDER)
        for ablation in ablations:
            sub = part[part["ablation"] == ablation]
            color = color_for(ablation, ABLATION_COLORS, ablations)
            label = ablation_label(ablation)
            P.plot_band(ax, P.density_x(sub["sparsity"]), sub, label=label, color=color)
        P.dense_line(ax, ctx.dense)
        P.sparsity_axis(ax, [*part["sparsity"], 0.0], label=ax in axes[-ncols:])
        ax.set_title(ctx.label(method, part), fontsize=10)
        ax.set_ylabel("Test accuracy (%)")
        ax.grid(alpha=0.3)
    for ax in axes[len(methods) :]:
        ax.set_visible(False)
    P.figure_legend(fig, axes)
    fig.suptitle(f"{ctx.title}: ablations at initialization")
    return fig, "Shuffling, reinitializing, inverting and N(0, 1) init per method (Figure 5)."


def _grasp_variants(ctx: _Setting) -> tuple | None:
    rows = ctx.at_main_step(ctx.rows)
    curves = []
    for method, ablation, label in GRASP_VARIANTS:
        sub = rows[(rows["method"] == method) & (rows["ablation"] == ablation)]
        if sub["mean"].notna().any():
            curves.append((sub, label))
    if len(curves) < 2:
        return None
    fig, (ax,) = P.new_figure(8.0, 4.6)
    for (sub, label), color in zip(curves, ("tab:purple", "tab:red", "tab:pink"), strict=False):
        P.plot_band(ax, P.density_x(sub["sparsity"]), sub, label=label, color=color)
    P.dense_line(ax, ctx.dense)
    P.sparsity_axis(ax, [s for sub, _ in curves for s in sub["sparsity"]] + [0.0])
    ax.set_ylabel("Test accuracy (%)")
    ax.set_title(f"{ctx.title}: variants of GraSP")
    ax.grid(alpha=0.3)
    P.legend_outside(ax)
    return fig, "The original, inverted and magnitude variants of GraSP (Figure 9)."


def _collapse(ctx: _Setting) -> tuple | None:
    rows = ctx.at_main_step(ctx.rows)
    rows = rows[rows["ablation"].isin(["none", "shuffle"]) & (rows["method"] != "dense")]
    rows = rows[rows["collapse_100"].notna()]
    if rows.empty:
        return None
    shares = ctx.at_main_step(ctx.per_run(ctx.data.collapse))
    shares = shares[shares["ablation"].isin(["none", "shuffle"]) & (shares["method"] != "dense")]
    panels = 2 if not shares.empty else 1
    fig, axes = P.new_figure(6.0 * panels + 1.6, 4.6, 1, panels)
    for (method, ablation), sub in _variants(ctx, rows):
        ys = sub.assign(mean=sub["collapse_100"], std=np.nan)
        P.plot_band(
            axes[0], P.density_x(sub["sparsity"]), ys, label=_variant_label(method, ablation),
            color=ctx.color(method), linestyle="-" if ablation == "none" else "--",
        )
    P.sparsity_axis(axes[0], [*rows["sparsity"], 0.0])
    axes[0].set_ylabel("Conv channels pruned entirely (%)")
    axes[0].set_title("Channels with all weights pruned", fontsize=10)
    axes[0].grid(alpha=0.3)
    if panels == 2:
        _collapse_thresholds(ctx, axes[1], shares)
    P.legend_outside(axes[-1] if panels == 2 else axes[0])
    fig.suptitle(f"{ctx.title}: neuron collapse")
    return fig, "Share of conv channels pruned entirely, and pruned to at least s % (Figure 6)."


def _collapse_thresholds(ctx: _Setting, ax, shares: pd.DataFrame) -> None:
    available = {
        f"{m}/{a}": set(g["sparsity"][g["sparsity"] > 0])
        for (m, a), g in shares.groupby(["method", "ablation"])
    }
    sparsity, why = focus_sparsity(available, ctx.matching)
    at = shares[np.isclose(shares["sparsity"], sparsity)]
    thresholds = sorted(at["threshold"].unique())
    positions = {t: i for i, t in enumerate(thresholds)}
    mean = at.groupby(["method", "ablation", "threshold"])["share"].mean().reset_index()
    for (method, ablation), sub in _variants(ctx, mean):
        xs = [positions[t] for t in sub["threshold"]]
        ax.plot(
            xs, 100 * sub["share"], marker="o", markersize=4, color=ctx.color(method),
            linestyle="-" if ablation == "none" else "--", label=_variant_label(method, ablation),
        )
    ax.set_xticks(range(len(thresholds)), [f"≥ {100 * t:g}%" for t in thresholds])
    ax.set_xlabel("Channel sparsity at least")
    ax.set_ylabel("Conv channels (%)")
    ax.set_title(f"At sparsity {100 * sparsity:.1f}% ({why})", fontsize=10)
    ax.grid(alpha=0.3)


def _prune_step(ctx: _Setting) -> tuple | None:
    plain = unmodified(ctx.rows)
    stepped = step_methods(ctx.rows)
    if not stepped:
        return None
    available = {
        m: {
            s
            for s, g in plain[plain["method"] == m].groupby("sparsity")
            if g["mean"].notna().sum() >= 2
        }
        for m in stepped
    }
    if not any(available.values()):
        return None
    sparsity, why = focus_sparsity(available, ctx.matching)
    at = plain[np.isclose(plain["sparsity"], sparsity) & (plain["method"] != "dense")]
    fig, (ax,) = P.new_figure(8.0, 4.6)
    steps = at["prune_step"].astype(float)
    for method in ctx.methods(at):
        sub = at[at["method"] == method]
        if method in stepped:
            P.plot_band(
                ax, sub["prune_step"].to_numpy(float), sub, label=method_label(method),
                color=ctx.color(method),
            )
        elif sub["mean"].notna().any():  # a single step: a horizontal reference (random, LTR)
            row = sub.dropna(subset=["mean"]).iloc[0]
            label = ctx.label(method, sub)
            ax.axhline(100 * row["mean"], color=ctx.color(method), linestyle="--", label=label)
    P.dense_line(ax, ctx.dense)
    _lr_drops(ctx, ax, steps.max())
    positive = steps[steps > 0]
    ax.set_xscale("symlog", linthresh=float(positive.min()) if len(positive) else 1.0)
    ax.set_xlabel("Training step t at which the network is pruned (LTR: rewind step)")
    ax.set_ylabel("Test accuracy (%)")
    ax.set_title(f"{ctx.title}: pruning after t steps at sparsity {100 * sparsity:.1f}% ({why})")
    ax.grid(alpha=0.3)
    P.legend_outside(ax)
    return fig, "Accuracy when pruning after t training steps, then retraining (Figure 7)."


def _layers(ctx: _Setting) -> tuple | None:
    layers = ctx.at_main_step(unmodified(ctx.per_run(ctx.data.layers)))
    layers = layers[(layers["method"] != "dense") & (layers["sparsity"] > 0)]
    if layers.empty:
        return None
    available = {m: set(g["sparsity"]) for m, g in layers.groupby("method")}
    sparsity, why = focus_sparsity(available, ctx.matching)
    at = layers[np.isclose(layers["sparsity"], sparsity)]
    order = at.groupby("layer")["order"].min().sort_values()
    names = list(order.index)
    methods = ctx.methods(at)
    mean = at.groupby(["method", "layer"])["density"].mean()
    width = min(40.0, max(8.0, 0.22 * len(names) * max(1.0, len(methods) ** 0.5) + 3))
    fig, (ax,) = P.new_figure(width, 5.0)
    bar = 0.8 / len(methods)
    xs = np.arange(len(names))
    for i, method in enumerate(methods):
        values = [100 * mean.get((method, layer), np.nan) for layer in names]
        offset = (i - (len(methods) - 1) / 2) * bar
        ax.bar(xs + offset, values, bar, color=ctx.color(method), label=method_label(method))
    short = [n.removesuffix(".weight") for n in names]
    ax.set_xticks(xs, short, rotation=90, fontsize=7)
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylabel("Weights remaining in the layer (%)")
    ax.set_xlabel("Layer (input → output)")
    ax.set_title(f"{ctx.title}: per-layer density at sparsity {100 * sparsity:.1f}% ({why})")
    ax.grid(alpha=0.3, axis="y")
    P.legend_outside(ax)
    return fig, "Share of each layer's weights kept by each method (Figure 11)."


def _variants(ctx: _Setting, rows: pd.DataFrame) -> list[tuple[tuple[str, str], pd.DataFrame]]:
    """(method, ablation) groups, methods in order, each method's unmodified curve first."""
    out = []
    for method in ctx.methods(rows):
        for ablation in ("none", "shuffle"):
            sub = rows[(rows["method"] == method) & (rows["ablation"] == ablation)]
            if not sub.empty:
                out.append(((method, ablation), sub))
    return out


def _variant_label(method: str, ablation: str) -> str:
    label = method_label(method)
    return label if ablation == "none" else f"{label} ({ablation_label(ablation).lower()})"


def _matching_line(ctx: _Setting, ax) -> None:
    if ctx.matching is not None:
        x = 1.0 - ctx.matching
        ax.axvline(x, color="black", linestyle=":", linewidth=1,
                   label=f"Matching sparsity {100 * ctx.matching:.1f}%")


def _lr_drops(ctx: _Setting, ax, last_step: float) -> None:
    """Dotted lines where the dense run's learning rate dropped (Figure 7's vertical lines)."""
    curves = ctx.per_run(ctx.data.curves)
    curves = curves[(curves["method"] == "dense") & (curves["status"] == "ok")]
    if curves.empty:
        return
    first = curves[curves["run_id"] == curves["run_id"].iloc[0]].sort_values("step")
    lr, step = first["lr"].to_numpy(float), first["step"].to_numpy(float)
    drops = [step[i - 1] for i in range(1, len(lr)) if lr[i] < lr[i - 1]]
    for i, x in enumerate(d for d in drops if d <= 1.05 * last_step):
        ax.axvline(x, color="tab:gray", linestyle=":", label="Learning-rate drop" if i == 0 else None)


_DRAW = {
    "accuracy": _accuracy,
    "ablations": _ablations,
    "grasp_variants": _grasp_variants,
    "collapse": _collapse,
    "prune_step": _prune_step,
    "layers": _layers,
}
