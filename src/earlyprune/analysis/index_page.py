"""The report's ``index.html``: verdicts first, then masks, figures and tables per setting.

Every text from a store (paths, method names, errors) is escaped; links are URL-quoted, so the
page opens from the report folder without a server.
"""

from __future__ import annotations

import html
from urllib.parse import quote

import pandas as pd

from earlyprune.analysis.aggregate import main_rows, unmodified
from earlyprune.analysis.agreement import NO_TORCH, Agreement, agreement_html
from earlyprune.analysis.grid import Grid, grid_html
from earlyprune.analysis.layer_density import LAYER_CSV, layer_html, main_layers
from earlyprune.analysis.load import MEASURED, StoreData
from earlyprune.analysis.mask_table import mask_table
from earlyprune.analysis.names import method_label, setting_label
from earlyprune.analysis.verdict_html import rule_text, verdict_table

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.85em; }
caption { text-align: left; font-weight: bold; padding: 0.3em 0; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; white-space: nowrap; }
td { text-align: right; } th[scope=row] { text-align: left; font-weight: normal; }
.scroll { overflow-x: auto; } figure { margin: 1.5em 0; } img { max-width: 100%; }
figcaption { color: #444; font-size: 0.9em; } .warn { color: #8a4b00; }
table.verdicts { width: 100%; } table.verdicts td { text-align: left; white-space: normal; }
table.verdicts th[scope=col] { white-space: normal; vertical-align: bottom; }
table.verdicts td.sparsity { text-align: right; white-space: nowrap; }
table.verdicts tr.first > * { border-top: 2px solid #888; }
th[scope=rowgroup] { text-align: left; vertical-align: top; font-weight: bold; }
td.yes { background: #e3f4e1; } td.no { background: #fbe3e1; } td.unclear { background: #f1f1f1; }
table.verdicts td.na, table.verdicts td.notrun { color: #999; text-align: center; }
td.notrun { font-size: 0.8em; } table.verdicts th[scope=rowgroup] { white-space: normal; }
table.layers th[scope=col] { white-space: normal; }
.seeds { color: #555; font-size: 0.8em; } .note { color: #444; font-size: 0.9em; }
"""


def index_html(
    data: StoreData,
    summary: pd.DataFrame,
    matching: dict[tuple[str, str], float | None],
    figures: dict,
    grids: list[Grid],
    reference: str,
    tolerance: float,
    agreements: dict[tuple[str, str], Agreement | None] | None,
    has_layers: bool = False,
    speed: str = "",
) -> str:
    """``index.html``: the whole report on one page, which opens without a server.

    ``speed`` is the measured-speed section (``speed_table.speed_html``), shown when not empty.
    """
    esc = html.escape
    parts = _head_html(data, has_layers)
    if agreements is None:
        parts.append(f'<p class="note">{esc(NO_TORCH)}</p>')
    edges = matching_edges(summary, matching, reference)
    parts.append(_matching_html(matching, edges, reference, tolerance))
    parts.append(f'<p class="note">Verdicts: {esc(rule_text())}</p>')
    for setting in matching:
        found = (agreements or {}).get(setting)
        parts += _setting_html(
            data, summary, setting, matching[setting], figures.get(setting, []), grids, found
        )
    parts.append(speed)
    parts.append(_problems_html(data.results))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _link(name: str, text: str | None = None) -> str:
    return f'<a href="{quote(name)}">{html.escape(text or name)}</a>'


def matching_edges(
    summary: pd.DataFrame, matching: dict[tuple[str, str], float | None], reference: str
) -> dict[tuple[str, str], bool]:
    """Whether each setting's matching sparsity is the highest sparsity ``reference`` was run at.

    There the true matching sparsity may lie beyond the grid: it reads "≥ 93.1 %".
    """
    edges = {}
    for (model, dataset), found in matching.items():
        rows = summary[(summary["model"] == model) & (summary["dataset"] == dataset)]
        curve = main_rows(unmodified(rows))
        curve = curve[(curve["method"] == reference) & curve["mean"].notna()]
        edges[(model, dataset)] = found is not None and bool(
            len(curve) and abs(float(curve["sparsity"].max()) - found) < 1e-9
        )
    return edges


def matching_text(sparsity: float | None, at_edge: bool) -> str:
    """``48.8%``, ``≥ 93.1%`` at the edge of the grid, ``—`` when there is none."""
    if sparsity is None:
        return "—"
    return f"{'≥ ' if at_edge else ''}{100 * sparsity:.1f}%"


def _matching_html(
    matching: dict[tuple[str, str], float | None],
    edges: dict[tuple[str, str], bool],
    reference: str,
    tolerance: float,
) -> str:
    esc = html.escape
    rows = "".join(
        f"<tr><th scope='row'>{esc(setting_label(m, d))}</th>"
        f"<td>{esc(matching_text(s, edges.get((m, d), False)))}</td></tr>"
        for (m, d), s in matching.items()
    )
    rule = (
        f"highest sparsity up to which {method_label(reference)} stays within one dense std and "
        f"within {100 * tolerance:g} points of the dense network's mean accuracy; “≥” where "
        "it still matches at the highest sparsity that was run"
    )
    return (
        f"<h2>Matching sparsities</h2><p>{esc(rule)}.</p>"
        f"<table><thead><tr><th>Setting</th><th>Matching sparsity</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def _problems_html(results: pd.DataFrame) -> str:
    bad = results[~results["status"].isin(MEASURED)]  # disconnected: an outcome, in the tables
    if bad.empty:
        return ""
    esc = html.escape
    columns = [c for c in ("run_id", "model", "dataset", "method", "ablation", "sparsity", "seed")]
    columns = [c for c in columns if c in bad.columns]
    head = "".join(f"<th>{esc(c)}</th>" for c in [*columns, "status", "error"])
    body = []
    for _, row in bad.iterrows():
        error = str(row["error"]) if isinstance(row["error"], str) else ""
        error = error.strip().splitlines()[-1][:300] if error.strip() else ""
        cells = "".join(f"<td>{esc(str(row[c]))}</td>" for c in [*columns, "status"])
        body.append(f"<tr>{cells}<td>{esc(error)}</td></tr>")
    return (
        f"<h2>Diverged and failed runs</h2><div class='scroll'><table><thead><tr>{head}</tr>"
        f"</thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def _head_html(data: StoreData, has_layers: bool) -> list[str]:
    """The page's head: title, the store's run counts, links to the data, warnings."""
    esc = html.escape
    status = data.results["status"].value_counts()
    counts = ", ".join(f"{int(status.get(s, 0))} {s}" for s in ("ok", "diverged", "failed"))
    if status.get("disconnected"):  # an outcome, in the means: said once, not a failure
        counts += (
            f"; {int(status['disconnected'])} disconnected: their masks cut every "
            "input→output path, trained to chance and included in the means"
        )
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>earlyprune report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>earlyprune report</h1>",
        f"<p>Store <code>{esc(str(data.store))}</code>: {len(data.results)} runs ({counts}).",
        " Data: "
        + ", ".join(_link(n) for n in ("results.csv", "summary.csv", "tables.md"))
        + f", {_link('tables.tex')}"
        + (f", {_link(LAYER_CSV)}" if has_layers else "")
        + ".</p>",
    ]
    versions = sorted(set(data.results["numerics_version"]))
    if len(versions) > 1:  # means would mix results of different definitions of the computation
        counts = data.results["numerics_version"].value_counts()
        listed = ", ".join(f"{int(counts[v])} of version {v}" for v in versions)
        parts.append(
            f'<p class="warn">This store mixes results of several numerics versions ({listed}): '
            "the older ones were computed under an earlier definition of the methods. Recompute "
            "them (<code>--recompute-stale</code>) or report from a new store.</p>"
        )
    if data.skipped:
        items = "".join(f"<li><code>{esc(p)}</code>: {esc(r)}</li>" for p, r in data.skipped)
        parts.append(
            f'<p class="warn">{len(data.skipped)} result file(s) skipped:</p><ul>{items}</ul>'
        )
    return parts


def _setting_html(
    data: StoreData,
    summary: pd.DataFrame,
    setting: tuple[str, str],
    matching: float | None,
    figures: list,
    grids: list[Grid],
    agreement: Agreement | None,
) -> list[str]:
    """One (model, dataset): verdicts first, then masks, figures, agreement and tables."""
    esc = html.escape
    model, dataset = setting
    parts: list[str] = []
    name = setting_label(model, dataset)
    parts.append(f"<h2>{esc(name)}</h2>")
    runs = data.results[(data.results["model"] == model) & (data.results["dataset"] == dataset)]
    verdict = verdict_table(runs)
    if verdict:
        parts.append(f'<div class="scroll">{verdict}</div>')
    rows = summary[(summary["model"] == model) & (summary["dataset"] == dataset)]
    masks = mask_table(rows, has_conv=bool(runs["collapse_100"].notna().any()))
    if masks:
        parts.append(f'<div class="scroll">{masks}</div>')
    for fig in figures:
        parts.append(
            f'<figure><img src="{quote(fig.name)}" alt="{esc(fig.kind)}: {esc(name)}">'
            f"<figcaption>{esc(fig.caption)} ({_link(fig.pdf, 'PDF')})</figcaption></figure>"
        )
        if fig.kind == "layers":  # the same densities as numbers
            numbers = layer_html(main_layers(data, rows), matching, LAYER_CSV)
            parts.append(
                '<details open class="scroll"><summary>Per-layer densities as numbers'
                f"</summary>{numbers}</details>"
            )
    if agreement is not None:
        parts.append(f'<div class="scroll">{agreement_html(agreement)}</div>')
    for grid in grids:
        if grid.setting == (model, dataset):
            parts.append(f'<div class="scroll">{grid_html(grid)}</div>')
    return parts
