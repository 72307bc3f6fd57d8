"""The paper's sanity-check verdicts per method × sparsity, as an HTML table for ``index.html``.

The verdicts are those of ``earlyprune check-method`` (:mod:`earlyprune.analysis.verdicts`, which reads
result dicts only and never imports torch): every check listed in ``verdicts.CHECKS`` becomes a
column as soon as some method has data on both sides of it, so a check added there appears here
with no edit. Each (model, dataset) is judged on its own runs, each method at its main prune step
(the lowest one with unmodified runs, as in the figures).

The table is built to be read at a glance in a window 1400 px wide: one row per method ×
sparsity, one column per question; a cell states the answer and the difference in words, one
sign convention for every column ("yes: accuracy falls 64.7 points when inverted", "no: within
0.3 points of random"); the accuracies, se and seeds behind it are on hover. A question that
means nothing for a method (``verdicts.not_applicable``: "beats random" for random, the ablations
of a random-sparse baseline, ...) shows an em dash whose title says why, never a verdict.
"""

from __future__ import annotations

import html
import math

import pandas as pd

from earlyprune.analysis import verdicts as V
from earlyprune.analysis.names import METHOD_ORDER, method_label, ordered

_ANSWER_CLASS = {"yes": "yes", "no": "no", "unclear": "unclear"}


def rule_text(min_effect: float = V.MIN_EFFECT) -> str:
    """The decision rule in one paragraph (the same as ``earlyprune.analysis.verdicts.decide``)."""
    e = f"{100 * min_effect:g}"
    return (
        "Each cell answers its column's question and says the difference of mean test "
        "accuracies in words: how far the method lies above or below the other method "
        "(“beats …”), or how far its accuracy falls or rises when ablated (a method whose "
        f"choices matter loses accuracy); a difference under {e} point reads “within”. "
        "se = √(s₁²/n₁ + s₂²/n₂) over seeds. yes: the method is better (or loses accuracy when "
        f"ablated) by ≥ {e} point and by > 2·se; no: even adding 2·se the difference stays below "
        f"{e} point, or it is below {e} point with se ≤ {e}; unclear: anything else, or fewer "
        "than two ok seeds on a side. “yes” means the method passes that check; “—” marks a "
        "question that means nothing for that method (hover it for why). Hover a cell for the "
        "accuracies behind it."
    )


def setting_records(runs: pd.DataFrame) -> list[dict]:
    """One setting's runs as the result dicts ``earlyprune.analysis.verdicts`` reads.

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
    head = "".join(f'<th scope="col" title="{esc(c.name)}">{esc(c.heading)}</th>' for c in shown)
    body = []
    keys = sorted(cells, key=lambda k: (methods.index(k[0]), k[1]))
    for i, (method, sparsity) in enumerate(keys):
        row = cells[(method, sparsity)]
        tds = "".join(_cell(method, row.get(c.name), c) for c in shown)
        first = i == 0 or keys[i - 1][0] != method
        span = sum(k[0] == method for k in keys)
        name = (
            f'<th scope="rowgroup" rowspan="{span}">{esc(method_label(method))}</th>'
            if first
            else ""
        )
        klass = ' class="first"' if first else ""
        body.append(
            f'<tr{klass} data-method="{esc(method)}">{name}'
            f'<td class="sparsity">{100 * sparsity:.1f}</td>{tds}</tr>'
        )
    return (
        '<table class="verdicts">\n<caption>Sanity checks (paper Sections 4–5): does each '
        "method pass? Answer and difference in points; hover a cell for the accuracies, se "
        "and seeds</caption>\n"
        f'<thead><tr><th scope="col">Method</th><th scope="col">Sparsity (%)</th>{head}</tr>'
        "</thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>\n"
    )


def _cell(method: str, v: V.Verdict | None, check: V.Check) -> str:
    esc = html.escape
    data = f'data-check="{esc(check.name)}"'
    why = V.not_applicable(check, method)
    if why:
        return f'<td class="na" {data} title="{esc(why)}">—</td>'
    if v is None:
        return f'<td class="notrun" {data} title="not run at this sparsity">not run</td>'
    seeds = f"{v.subject.n} v {v.other.n} seeds"
    if math.isnan(v.effect):
        text = v.meaning
    else:
        text = check.words(v.effect, v.min_effect)
        if not math.isnan(v.se):
            seeds = f"se {100 * v.se:.1f} · {seeds}"
    klass = _ANSWER_CLASS.get(v.answer, "unclear")
    return (
        f'<td class="{klass}" {data} title="{esc(v.line())}"><b>{esc(v.answer)}</b>: '
        f'{esc(text)}<br><span class="seeds">{esc(seeds)}</span></td>'
    )
