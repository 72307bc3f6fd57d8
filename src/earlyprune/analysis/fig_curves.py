"""Accuracy figures: vs sparsity (paper Figure 4), ablations (5), GraSP variants (9), vs step (7)."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from earlyprune.analysis import plotting as P
from earlyprune.analysis.aggregate import focus_sparsity, unmodified
from earlyprune.analysis.fig_context import Setting, titled
from earlyprune.analysis.names import (
    ABLATION_COLORS,
    ABLATION_ORDER,
    REFERENCE_METHODS,
    ablation_label,
    color_for,
    method_label,
    ordered,
)
from earlyprune.analysis.tables import ablation_free_methods, step_methods

Drawn = tuple[Figure, str] | None
# (method, ablation, label, colour): the paper's Figure 9.
GRASP_VARIANTS = (
    ("grasp", "none", "GraSP (prune highest scores; original)", "tab:purple"),
    ("grasp", "invert", "GraSP inverted (prune lowest scores)", "tab:red"),
    ("grasp_magnitude", "none", "GraSP magnitude (prune lowest |score|)", "tab:pink"),
)
# Single-step benchmarks drawn across Figure 7 as horizontal references, as in the paper.
_FLAT_REFERENCES = ("magnitude_after_training", "random")


def accuracy(ctx: Setting) -> Drawn:
    """Figure 4: every method's accuracy vs sparsity, with the dense and matching references."""
    main = ctx.main
    if main["mean"].notna().sum() == 0:
        return None
    fig, (ax,) = P.new_figure(8.0, 4.8)
    for method in ctx.methods(main):
        rows = main[main["method"] == method]
        reference = method in REFERENCE_METHODS
        P.plot_band(
            ax,
            P.density_x(rows["sparsity"]),
            rows,
            label=ctx.label(method, rows),
            color=ctx.color(method),
            linestyle="--" if reference else "-",
            marker="" if reference and method != "random" else "o",
        )
    P.dense_line(ax, ctx.dense)
    if ctx.matching is not None:
        ax.axvline(
            1.0 - ctx.matching,
            color="black",
            linestyle=":",
            linewidth=1,
            label=f"Matching sparsity {ctx.matching_text}",
        )
    P.sparsity_axis(ax, [*main["sparsity"], 0.0])
    ax.set_ylabel("Test accuracy (%)")
    titled(ax, f"{ctx.title}: accuracy after pruning")
    ax.grid(alpha=0.3)
    P.legend_outside(ax)
    return fig, _accuracy_caption(ctx, main)


def _accuracy_caption(ctx: Setting, main) -> str:
    """Says what the figure shows, naming only the references that were run."""
    parts = ["Test accuracy vs sparsity, mean ± std over seeds"]
    refs = [method_label(m) for m in ctx.methods(main) if m in REFERENCE_METHODS]
    if refs:
        parts.append(f"dashed: random-sparse references ({', '.join(refs)})")
    if ctx.dense is not None and not math.isnan(ctx.dense["mean"]):
        parts.append("grey: the dense network")
    if ctx.matching is not None:
        parts.append(f"dotted: matching sparsity {ctx.matching_text}")
    return "; ".join(parts) + " (paper Figure 4)."


def ablations(ctx: Setting) -> Drawn:
    """Figure 5: one panel per method that has ablations, one line per ablation."""
    rows = ctx.rows[~ctx.rows["method"].isin(ablation_free_methods(ctx.rows))]
    # The dense network's own init N(0, 1) runs are references drawn in the panels, not a panel.
    rows = ctx.at_main_step(rows[rows["method"] != "dense"])
    methods = [m for m in ctx.methods(rows) if rows.loc[rows["method"] == m, "mean"].notna().any()]
    if not methods:
        return None
    ncols = 2 if len(methods) == 4 else min(len(methods), 3)
    nrows = math.ceil(len(methods) / ncols)
    fig, axes = P.new_figure(4.6 * ncols, 3.6 * nrows + 0.6, nrows, ncols)
    for i, (ax, method) in enumerate(zip(axes, methods, strict=False)):
        part = rows[rows["method"] == method]
        names = ordered(part["ablation"], ABLATION_ORDER)
        for ablation in names:
            sub = part[part["ablation"] == ablation]
            color = color_for(ablation, ABLATION_COLORS, names)
            label = ablation_label(ablation)
            P.plot_band(ax, P.density_x(sub["sparsity"]), sub, label=label, color=color)
        P.dense_line(ax, ctx.dense)
        for ablation in names:  # an ablation with its own dense network (init N(0, 1))
            own = ctx.own_dense(ablation)
            if own is not None:
                color = color_for(ablation, ABLATION_COLORS, names)
                P.dense_line(ax, own, label=f"Dense, {ablation_label(ablation)}", color=color)
        P.sparsity_axis(ax, [*part["sparsity"], 0.0], label=i >= len(methods) - ncols)
        ax.set_title(ctx.label(method, part), fontsize=10)
        ax.set_ylabel("Test accuracy (%)")
        ax.grid(alpha=0.3)
    for ax in axes[len(methods) :]:
        ax.set_visible(False)
    if not ctx.free_y:
        P.share_y(axes)
    P.figure_legend(fig, axes)
    fig.suptitle(f"{ctx.title}: ablations")
    ran = ordered(rows.loc[rows["mean"].notna(), "ablation"], ABLATION_ORDER)
    names = [ablation_label(a) for a in ran if a != "none"]
    scale = "each panel its own y-range" if ctx.free_y else "one y-range for all panels"
    return fig, (
        f"Unmodified vs {', '.join(names) or 'no ablation'}, per method; {scale} (Figure 5)."
    )


def grasp_variants(ctx: Setting) -> Drawn:
    """Figure 9: GraSP, inverted GraSP and GraSP magnitude, when two of them exist."""
    rows = ctx.at_main_step(ctx.rows)
    curves = []
    for method, ablation, label, color in GRASP_VARIANTS:
        sub = rows[(rows["method"] == method) & (rows["ablation"] == ablation)]
        if sub["mean"].notna().any():
            curves.append((sub, label, color))
    if len(curves) < 2:
        return None
    fig, (ax,) = P.new_figure(8.0, 4.6)
    for sub, label, color in curves:
        P.plot_band(ax, P.density_x(sub["sparsity"]), sub, label=label, color=color)
    P.dense_line(ax, ctx.dense)
    P.sparsity_axis(ax, [s for sub, _, _ in curves for s in sub["sparsity"]] + [0.0])
    ax.set_ylabel("Test accuracy (%)")
    titled(ax, f"{ctx.title}: variants of GraSP")
    ax.grid(alpha=0.3)
    P.legend_outside(ax)
    drawn = "; ".join(label for _, label, _ in curves)
    return fig, f"Variants of GraSP: {drawn} (Figure 9)."


def prune_step(ctx: Setting) -> Drawn:
    """Figure 7: accuracy vs the step t at which a method prunes, at one sparsity."""
    plain = unmodified(ctx.rows)
    stepped = step_methods(ctx.rows)
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
    at = at.dropna(subset=["mean"])
    fig, (ax,) = P.new_figure(8.0, 4.6)
    for method in ctx.methods(at):
        sub = at[at["method"] == method]
        if method in stepped:
            steps = sub["prune_step"].to_numpy(float)
            P.plot_band(ax, steps, sub, label=method_label(method), color=ctx.color(method))
        elif method in _FLAT_REFERENCES:
            mean = 100 * sub["mean"].iloc[0]
            label = ctx.label(method, sub)
            ax.axhline(mean, color=ctx.color(method), linestyle="--", label=label)
        else:  # recorded at one step only: a single point, not a line across all t
            x = sub["prune_step"].to_numpy(float)
            label = ctx.label(method, sub)
            ax.plot(x, 100 * sub["mean"], "D", color=ctx.color(method), label=label)
    P.dense_line(ax, ctx.dense)
    steps = at["prune_step"].astype(float)
    _lr_drops(ctx, ax, steps.max())
    P.step_axis(ax, steps)
    rewound = " (LTR: rewind step)" if "ltr" in set(at["method"]) else ""
    ax.set_xlabel(f"Training step t at which the network is pruned{rewound}")
    ax.set_ylabel("Test accuracy (%)")
    titled(ax, f"{ctx.title}: pruning after t steps", f"sparsity {100 * sparsity:.1f}% ({why})")
    ax.grid(alpha=0.3)
    P.legend_outside(ax)
    return fig, "Accuracy when pruning after t training steps, then retraining (Figure 7)."


def _lr_drops(ctx: Setting, ax: Axes, last_step: float) -> None:
    """Dotted lines where the dense run's learning rate dropped (Figure 7's vertical lines)."""
    curves = ctx.per_run(ctx.data.curves)
    curves = curves[(curves["method"] == "dense") & (curves["status"] == "ok")]
    if curves.empty:
        return
    first = curves[curves["run_id"] == curves["run_id"].iloc[0]].sort_values("step")
    lr, step = first["lr"].to_numpy(float), first["step"].to_numpy(float)
    # Each point is logged at the end of an epoch; a lower rate started after the previous one.
    drops = [step[i - 1] for i in range(1, len(lr)) if lr[i] < lr[i - 1]]
    for i, x in enumerate(d for d in drops if d <= 1.05 * last_step):
        label = "Learning-rate drop (dense run)" if i == 0 else None
        ax.axvline(x, color="tab:gray", linestyle=":", label=label)
