"""What each mask costs and keeps: nominal and effective density, FLOPs, neuron collapse.

One HTML table per (model, dataset), from the summary (means over every run that recorded the
number; older results without a number show ``—``). Neuron collapse reads ``n/a`` for a network
without convolutional channels, where it is not defined.
"""

from __future__ import annotations

import html
import math

import pandas as pd

from earlyprune.analysis.aggregate import main_rows, unmodified
from earlyprune.analysis.names import METHOD_ORDER, method_label, ordered


def mask_table(rows: pd.DataFrame, has_conv: bool) -> str:
    """The mask statistics of one setting's summary rows (methods unmodified, main step).

    Args:
        rows: One (model, dataset)'s rows of :func:`summarize`.
        has_conv: Whether the network has conv channels (else collapse is ``n/a``).
    """
    main = main_rows(unmodified(rows))
    main = main[(main["method"] != "dense") & (main["sparsity"] > 0)]
    if main.empty:
        return ""
    esc = html.escape
    columns = [  # (header, summary column); a statistic no run recorded gets no column
        ("Density (%)", "density"),
        ("Effective density (%)", "effective_density"),
        ("FLOPs (% of dense)", "flops_fraction"),
        ("Channels pruned entirely (%)", "collapse_100"),
    ]
    columns = [
        (h, c)
        for h, c in columns
        if main[c].notna().any() or (c == "collapse_100" and not has_conv)
    ]
    body = []
    for method in ordered(main["method"], METHOD_ORDER):
        part = main[main["method"] == method].sort_values("sparsity")
        for _, r in part.iterrows():
            cells = [f"{100 * r['sparsity']:.1f}"]
            cells += [
                "n/a" if c == "collapse_100" and not has_conv else _pct(r[c]) for _, c in columns
            ]
            tds = "".join(f"<td>{esc(c)}</td>" for c in cells)
            body.append(f'<tr><th scope="row">{esc(method_label(method))}</th>{tds}</tr>')
    head = "".join(f"<th>{h}</th>" for h in ("Method", "Sparsity (%)", *(h for h, _ in columns)))
    described = {
        "density": "weights kept (nominal)",
        "effective_density": "weights on an input→output path (effective)",
        "flops_fraction": "forward multiply-adds of the pruned network",
        "collapse_100": "neuron collapse (n/a: no conv channels)"
        if not has_conv
        else "neuron collapse",
    }
    what = ", ".join(described[c] for _, c in columns)
    return (
        f"<table>\n<caption>Masks: {esc(what)}; means over seeds</caption>\n"
        f"<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>\n"
    )


def _pct(value: float) -> str:
    return "—" if value is None or math.isnan(value) else f"{100 * value:.1f}"
