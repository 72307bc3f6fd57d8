"""Shared matplotlib pieces: figures without pyplot, the paper's sparsity axis, atomic saving.

Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas directly, never through
``pyplot``: no global backend switch, no figure registry to leak, safe in threads and notebooks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

from earlyprune.analysis.files import atomic_write

DPI = 120


def new_figure(width: float, height: float, nrows: int = 1, ncols: int = 1) -> tuple[Figure, list]:
    """A constrained-layout figure on an Agg canvas and its axes, flattened row by row."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def save_png(fig: Figure, path: Path) -> Path:
    """Writes ``fig`` to ``path`` as PNG, atomically."""
    return atomic_write(path, lambda stream: fig.savefig(stream, format="png", dpi=DPI))


def save_pdf(fig: Figure, path: Path) -> Path:
    """Writes ``fig`` to ``path`` as vector PDF (for papers), atomically.

    The creation date is left out so that one figure gives the same bytes every time.
    """
    metadata = {"CreationDate": None}
    return atomic_write(path, lambda stream: fig.savefig(stream, format="pdf", metadata=metadata))


def share_y(axes: Sequence[Axes]) -> None:
    """Gives every visible panel the union of their y-ranges, so panels compare at a glance."""
    shown = [ax for ax in axes if ax.get_visible() and ax.has_data()]
    if len(shown) < 2:
        return
    low = min(ax.get_ylim()[0] for ax in shown)
    high = max(ax.get_ylim()[1] for ax in shown)
    for ax in shown:
        ax.set_ylim(low, high)


def step_axis(ax: Axes, steps: Sequence[float]) -> None:
    """A symlog x axis of training steps with a plain label at each step that was run.

    Labels read ``0, 20, 40, 100, 1000`` rather than powers of ten; when steps crowd, every
    other one (keeping the first and last) is labelled.
    """
    values = sorted({float(s) for s in steps})
    positive = [v for v in values if v > 0]
    linthresh = positive[0] if positive else 1.0
    ax.set_xscale("symlog", linthresh=linthresh)
    ax.set_xlim(-0.15 * linthresh, 1.3 * max(values[-1] if values else 1.0, linthresh))
    step = 1 if len(values) <= 8 else 2
    shown = {v for i, v in enumerate(values) if i % step == 0 or v == values[-1]}
    ax.xaxis.set_major_locator(FixedLocator(values))
    ax.xaxis.set_major_formatter(FixedFormatter([_step(v) if v in shown else "" for v in values]))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.tick_params(axis="x", labelsize=8)


def density_x(sparsity: Sequence[float] | pd.Series) -> np.ndarray:
    """Position on the sparsity axis: the density ``1 - s`` (drawn on an inverted log scale)."""
    return 1.0 - np.asarray(sparsity, dtype=float)


def sparsity_axis(ax: Axes, sparsities: Sequence[float], label: bool = True) -> None:
    """The paper's x axis: log scale of weights remaining, labelled with sparsity in percent.

    The paper's grid ``1 - 0.8**k`` then falls at even steps, as in its figures. Sparsity grows to
    the right; with many grid points every other label is shown.
    """
    # Sparsity 0 is the dense network, drawn as a horizontal reference line: no tick for it
    # (on a coarse grid it would leave most of the axis empty).
    values = sorted({float(s) for s in sparsities if 0.0 < float(s) < 1.0})
    ax.set_xscale("log")
    if values:
        low, high = 1.0 - values[-1], 1.0 - values[0]
        pad = (high / low) ** 0.04 if high > low else 1.25
        ax.set_xlim(high * pad, low / pad)  # inverted: density falls to the right
    step = 1 if len(values) <= 12 else 2
    # Keep the highest sparsity labelled: it is the one readers look for.
    shown = {v for i, v in enumerate(reversed(values)) if i % step == 0}
    ax.xaxis.set_major_locator(FixedLocator([1.0 - v for v in values]))
    ax.xaxis.set_major_formatter(
        FixedFormatter([_percent(v) if v in shown else "" for v in values])
    )
    ax.xaxis.set_minor_locator(NullLocator())
    ax.tick_params(axis="x", labelrotation=45, labelsize=8)
    if label:
        ax.set_xlabel("Sparsity (%)  [log scale of weights remaining]")


def plot_band(
    ax: Axes,
    x: np.ndarray,
    rows: pd.DataFrame,
    *,
    label: str,
    color: str,
    linestyle: str = "-",
    marker: str = "o",
) -> None:
    """A mean line in percent with a ±1 std band; points without an ok run are left out.

    A point some of whose seeds had a mask that cut every input→output path (``n_disconnected``:
    trained to chance, part of the mean) is ringed by a hollow marker labelled as such.
    """
    rows = rows.assign(_x=x).dropna(subset=["mean"]).sort_values("_x")
    if rows.empty:
        return
    mean = 100 * rows["mean"].to_numpy(float)
    std = 100 * np.nan_to_num(rows["std"].to_numpy(float))
    xs = rows["_x"].to_numpy(float)
    ax.plot(xs, mean, linestyle=linestyle, marker=marker, markersize=3, color=color, label=label)
    if std.any():
        ax.fill_between(xs, mean - std, mean + std, color=color, alpha=0.18, linewidth=0)
    if "n_disconnected" in rows.columns:
        cut = rows["n_disconnected"].to_numpy(float) > 0
        if cut.any():
            _ring(ax, xs[cut], mean[cut])


def _ring(ax: Axes, xs: np.ndarray, ys: np.ndarray) -> None:
    """Hollow black rings, named once per axes in the legend."""
    named = DISCONNECTED_LABEL in ax.get_legend_handles_labels()[1]
    ring = {"linestyle": "", "marker": "o", "markersize": 9, "markerfacecolor": "none"}
    ax.plot(xs, ys, color="black", label=None if named else DISCONNECTED_LABEL, **ring)


#: Legend entry of the ring ``plot_band`` draws around a point with disconnected seeds.
DISCONNECTED_LABEL = "Ringed: mask cuts every input→output path (trained to chance)"


def dense_line(
    ax: Axes,
    reference: pd.Series | None,
    label: str = "Dense (unpruned)",
    color: str = "tab:gray",
) -> None:
    """The unpruned network's accuracy as a horizontal line with its ±1 std band."""
    if reference is None or math.isnan(reference["mean"]):
        return
    mean = 100 * float(reference["mean"])
    std = 0.0 if math.isnan(reference["std"]) else 100 * float(reference["std"])
    style = "-" if color == "tab:gray" else "-."
    ax.axhline(mean, color=color, linewidth=1.2, linestyle=style, label=label)
    if std:
        ax.axhspan(mean - std, mean + std, color=color, alpha=0.12, linewidth=0)


def legend_outside(ax: Axes) -> None:
    """A legend to the right of the axes, where it never hides a curve."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)


def figure_legend(fig: Figure, axes: list[Axes]) -> None:
    """One legend for all panels (labels deduplicated), below them."""
    seen: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    if seen:
        fig.legend(list(seen.values()), list(seen), loc="outside lower center", ncols=4, fontsize=8)


def _percent(sparsity: float) -> str:
    text = f"{100 * sparsity:.1f}"
    return text if float(text) != 0 or sparsity == 0 else f"{100 * sparsity:.2g}"


def _step(value: float) -> str:
    return f"{int(value)}" if float(value).is_integer() else f"{value:g}"
