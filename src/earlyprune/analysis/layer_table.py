"""The text table of per-layer density and neuron collapse, method by method, at one sparsity.

Reads result dicts (``result.json`` contents) only, like the verdicts it is printed with.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from typing import Any

from earlyprune.analysis.checks import method_label


def layer_table(
    results: Iterable[dict[str, Any]],
    methods: Iterable[str],
    sparsity: float,
    labels: dict[str, str] | None = None,
) -> str:
    """Per-layer density and neuron collapse of each method's unmodified masks at one sparsity.

    Densities are the share of each prunable tensor's weights kept (%); collapse is the share of
    conv channels pruned entirely (%); both are means over the ok runs (seeds). ``labels``
    shows a method under another name (a user scorer as the user wrote it).
    """
    labels = labels or {}
    s = round(float(sparsity), 6)
    by_method: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        spec = r.get("spec") or {}
        if (
            spec.get("ablation") == "none"
            and round(float(spec.get("sparsity", 0)), 6) == s
            and r.get("status") == "ok"
            and r.get("layer_density")
        ):
            by_method.setdefault(method_label(spec, as_written=False), []).append(r)
    shown = [m for m in methods if m in by_method]
    if not shown:
        return f"layer-wise densities at {100 * s:.1f} %: no ok runs\n"
    first = by_method[shown[0]][0]
    layers = list(first["layer_density"])
    rows = [
        ["method", *(n.removesuffix(".weight") for n in layers), "collapse"],  # module paths
        ["(weights)", *map(str, first["layer_numel"].values()), ""],
    ]
    for m in shown:
        runs = by_method[m]
        dens = [statistics.fmean(r["layer_density"][n] for r in runs) for n in layers]
        collapse = statistics.fmean(_collapse(r) for r in runs)
        shown_collapse = "n/a" if math.isnan(collapse) else f"{100 * collapse:.1f}"
        rows.append([labels.get(m, m), *(f"{100 * d:.1f}" for d in dens), shown_collapse])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        f"layer-wise density at {100 * s:.1f} % sparsity (% of each layer's weights kept) and "
        "neuron collapse (% of conv channels pruned entirely), mean over seeds"
    ]
    for row in rows:
        cells = [
            row[0].ljust(widths[0]),
            *(c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)),
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def _collapse(result: dict[str, Any]) -> float:
    nc = result.get("neuron_collapse") or {}
    if nc.get("per_layer") == {}:  # no conv channels: collapse is not defined
        return math.nan
    thresholds, overall = nc.get("thresholds", []), nc.get("overall", [])
    return float(overall[thresholds.index(1.0)]) if 1.0 in thresholds else math.nan
