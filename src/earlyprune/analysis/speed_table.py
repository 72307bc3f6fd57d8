"""Measured speed next to theoretical FLOPs, for the runs ``earlyprune speed`` measured.

Reads each run's ``speed.json`` (written beside its ``result.json``) and nothing else: analysis
never imports training, so the table works on stores measured anywhere.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import pandas as pd

SPEED_FILE = "speed.json"
COLUMNS = (
    "run_id",
    "model",
    "method",
    "structure",
    "sparsity",
    "flops_speedup",
    "measured_speedup",
    "outputs_equal",
    "kernel",
    "device",
)


def speed_frame(store: Path, results: pd.DataFrame) -> pd.DataFrame:
    """One row per run with a readable ``speed.json``: its theoretical and measured speedups.

    ``flops_speedup`` is dense / pruned FLOPs from ``result.json``; ``measured_speedup`` the
    dense masked network's latency over the structure's kernel's (None when no kernel ran here).
    """
    rows = []
    for _, run in results.iterrows():
        path = Path(store) / str(run["run_id"]) / SPEED_FILE
        try:
            speed = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # not measured (or unreadable): no row
            continue
        if not isinstance(speed, dict):
            continue
        flops, dense = run.get("flops"), run.get("flops_dense")
        ok = isinstance(flops, int | float) and flops > 0 and not math.isnan(flops)
        rows.append(
            {
                "run_id": run["run_id"],
                "model": run.get("model"),
                "method": run.get("method"),
                "structure": speed.get("structure"),
                "sparsity": speed.get("sparsity"),
                "flops_speedup": dense / flops if ok else None,
                "measured_speedup": speed.get("speedup"),
                "outputs_equal": speed.get("outputs_equal"),
                "kernel": speed.get("kernel") if speed.get("skipped") is None else speed["skipped"],
                "device": speed.get("device"),
            }
        )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def speed_html(frame: pd.DataFrame) -> str:
    """The report's "Measured speed" section (empty when no run was measured)."""
    if frame.empty:
        return ""
    esc = html.escape

    def cell(value: object) -> str:
        if isinstance(value, float):
            return "–" if math.isnan(value) else f"{value:.2f}"
        return "–" if value is None else str(value)

    head = "".join(f"<th>{esc(c)}</th>" for c in COLUMNS)
    body = [
        "<tr>" + "".join(f"<td>{esc(cell(row[c]))}</td>" for c in COLUMNS) + "</tr>"
        for _, row in frame.iterrows()
    ]
    note = (
        "Measured with <code>earlyprune speed</code> on the device named; a ratio of median "
        "latencies in one process. FLOPs speedup is dense / pruned FLOPs (what the mask saves "
        "on paper)."
    )
    return (
        f"<h2>Measured speed</h2><p class='note'>{note}</p><div class='scroll'><table><thead>"
        f"<tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )
