"""The paper's sanity-check verdicts per method × sparsity, as an HTML table for ``index.html``.

The verdicts are those of ``earlyprune check-method`` (:mod:`earlyprune.verdicts`, which reads
result dicts only and never imports torch): every check listed in ``verdicts.CHECKS`` becomes a
column as soon as some method has data on both sides of it, so a check added there appears here
with no edit. Each (model, dataset) is judged on its own runs, each method at its main prune step
(the lowest one with unmodified runs, as in the figures).
"""

from __future__ import annotations

import html
import math

import pandas as pd

from earlyprune import verdicts as V
from earlyprune.analysis.names import METHOD_ORDER, method_label, ordered

_ANSWER_CLASS = {"yes": "yes", "no": "no", "unclear": "unclear"}


def rule_text(min_effect: float = V.MIN_EFFECT) -> str:
    """The decision rule in one paragraph (the same as ``earlyprune.verdicts.decide``)."""
    e = f"{100 * min_effect:g}"
    return (
        "Δ is the difference of mean test accuracies in points: method − reference for "
        "“beats …”, ablated − unmodified for “sensitive to …” (a method whose choices matter "
        f"loses accuracy when ablated); se = √(s₁²/n₁ + s₂²/n₂) over seeds. yes: the asked-for "
        f"difference is ≥ {e} point and > 2·se; no: even adding 2·se it stays below {e} point, "
        f"or it is below {e} point with se ≤ {e}; unclear: anything else, or fewer than two ok "
        "seeds on a side. “yes” means the method passes that check. Hover a cell for the "
        "accuracies behind it."
    )


def setting_records(runs: pd.DataFrame) -> list[dict]:
    """One setting's runs as the result dicts ``earlyprune.verdicts`` reads.

    Each method keeps only its main prune step: the lowest step of its unmodified runs (or of
    all its runs when it has no unmodified ones).
    """
    plain = runs[runs["ablation"] == "none"]
    main = plain.groupby("method")["prune_step"].min()
    fallback = runs.groupby("method")["prune_step"].min()
    step = runs["method"].map(main).fillna(runs["method"].map(fallback))
    kept = runs[runs["prune_step"] == step]
    records = []
    for _, r in kept.iterrows():
        acc = r["test_accuracy"]
        records.append(
            {
                "run_id": r["run_id"],
                "status": r["status"],
                "test_accuracy": None if pd.isna(acc) else float(acc),
                "spec": {
                    "method": r["method"],
                    "ablation": r["ablation"],
                    "sparsity": float(r["sparsity"]),
                },
            }
        )
    return records


def verdict_table(runs: pd.DataFrame, min_effect: float = V.MIN_EFFECT) -> str:
    """The HTML verdict table of one (model, dataset), or ``""`` when no check has data.

    Args:
        runs: The rows of :func:`load_results` for one (model, dataset).
        min_effect: Smallest difference (fraction) a verdict counts.
    """
    records = setting_records(runs)
    groups = {
        (r["spec"]["method"], r["spec"]["ablation"], round(r["spec"]["sparsity"], 6))
        for r in records
    }
    checks = {c.name: c for c in V.CHECKS}
    methods = ordered(
        {m for m, a, s in groups if a == "none" and s > 0 and m != "dense"}, METHOD_ORDER
    )
    cells: dict[tuple[str, float], dict[str, V.Verdict]] = {}
    for method in methods:
        mine = sorted({s for m, a, s in groups if m == method and a == "none" and s > 0})
        for v in V.verdicts(records, method, mine, min_effect):
            check = checks.get(v.check)
            if check is None:
                continue
            s = round(v.sparsity, 6)
            if check.reference is not None:
                other = (check.reference, "none", s)
            else:
                other = (method, check.ablation, s)
            if other in groups:  # a check is shown only where its comparison was run
                cells.setdefault((method, v.sparsity), {})[v.check] = v
    shown = [c for c in V.CHECKS if any(c.name in row for row in cells.values())]
    if not shown:
        return ""
    esc = html.escape
    head = "".join(f"<th>{esc(c.name)}</th>" for c in shown)
    body = []
    for method, sparsity in sorted(cells, key=lambda k: (methods.index(k[0]), k[1])):
        row = cells[(method, sparsity)]
        tds = "".join(_cell(row.get(c.name), c) for c in shown)
        body.append(
            f'<tr><th scope="row">{esc(method_label(method))}</th>'
            f"<td>{100 * sparsity:.1f}</td>{tds}</tr>"
        )
    return (
        '<table class="verdicts">\n<caption>Sanity checks (paper Sections 4–5): verdict, '
        "Δ ± se in points, seeds behind each side</caption>\n"
        f"<thead><tr><th>Method</th><th>Sparsity (%)</th>{head}</tr></thead>\n<tbody>\n"
        + "\n".join(body)
        + "\n</tbody>\n</table>\n"
    )


def _cell(v: V.Verdict | None, check: V.Check) -> str:
    if v is None:
        return "<td></td>"
    esc = html.escape
    seeds = f"{v.subject.n} v {v.other.n} seeds"
    if math.isnan(v.effect):
        text = f"{v.answer}"
    else:
        delta = v.effect if check.reference is not None else -v.effect
        se = "" if math.isnan(v.se) else f" ± {100 * v.se:.1f}"
        text = f"{v.answer} {100 * delta:+.1f}{se}"
    klass = _ANSWER_CLASS.get(v.answer, "unclear")
    return (
        f'<td class="{klass}" title="{esc(v.line())}">{esc(text)}'
        f'<br><span class="seeds">{esc(seeds)}</span></td>'
    )
