"""Plain-language verdicts on the paper's sanity checks, computed from stored run results.

A pruning-at-init method passes the paper's test (Sections 4–5) when it beats random pruning and
its per-weight choices matter: accuracy drops when its mask is shuffled within layers (its own
allocation with random placement), when its kept weights are reinitialized, and when its ranking
is inverted. One check goes beyond the paper: does it beat ERK's allocation with random placement
(the strongest data-free layer-wise baseline)? Each check compares two groups
of runs (same sparsity, different method or ablation) by their test accuracies over seeds.

The rule (``decide``), with ``effect`` the difference of the two means in the direction the check
asks about (method − reference; unmodified − ablated), ``se = sqrt(s1²/n1 + s2²/n2)`` its
standard error from the two groups' sample standard deviations, and ``min_effect`` (default one
percentage point) the smallest difference worth reporting:

- **yes**: ``effect ≥ min_effect`` and ``effect > 2·se`` (a real difference, beyond seed noise);
- **no**: ``effect + 2·se < min_effect`` (even an optimistic reading stays below a worthwhile
  difference), or ``effect < min_effect`` with ``se ≤ min_effect`` (no worthwhile difference, and
  the seeds are precise enough that one would have shown);
- **unclear**: anything else, or fewer than two ok seeds on a side: run more seeds.

One sign convention, in words: a difference is never shown as a bare ``+``/``−`` number. A
"beats …" check reads "4.1 points above random" (or "below"); an ablation check reads "accuracy
falls 64.7 points when inverted" (or "rises"); a difference under ``min_effect`` reads "within
0.3 points of random" / "accuracy stays within 0.3 points when shuffled".

What each check compares, and for which methods it means nothing, is in
:mod:`earlyprune.analysis.checks`; this module reads result dicts only (``result.json``
contents) and never imports torch.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# Re-exported: these were defined here before the checks and the layer table got modules.
from earlyprune.analysis.checks import (
    CHECKS,
    MIN_EFFECT,
    RANDOM_PLACEMENTS,
    RANDOM_SPARSE,
    Check,
    check_named,
    fused_label,
    is_fused,
    method_label,
    not_applicable,
    recipe,
)
from earlyprune.analysis.layer_table import layer_table

__all__ = [
    "CHECKS",
    "MIN_EFFECT",
    "RANDOM_PLACEMENTS",
    "RANDOM_SPARSE",
    "Check",
    "Stat",
    "Verdict",
    "accuracies",
    "check_named",
    "decide",
    "layer_table",
    "method_label",
    "not_applicable",
    "recipe",
    "stat",
    "verdict_matrix",
    "verdicts",
]


@dataclass(frozen=True)
class Stat:
    """Test accuracy over seeds: mean and sample std (fractions), and the number of ok runs."""

    mean: float
    std: float
    n: int

    def text(self) -> str:
        if self.n == 0:
            return "no ok runs"
        std = "" if math.isnan(self.std) else f" ± {100 * self.std:.1f}"
        return f"{100 * self.mean:.1f}{std}"


def stat(values: Iterable[float]) -> Stat:
    """Mean, sample standard deviation (NaN below two values) and count."""
    xs = [float(v) for v in values]
    if not xs:
        return Stat(math.nan, math.nan, 0)
    std = statistics.stdev(xs) if len(xs) > 1 else math.nan
    return Stat(statistics.fmean(xs), std, len(xs))


@dataclass(frozen=True)
class Verdict:
    """The outcome of one check at one sparsity.

    Attributes:
        check: The check's name ("beats random", "sensitive to shuffling", ...).
        sparsity: Fraction removed.
        answer: "yes", "no" or "unclear" (see the module docstring for the rule).
        effect: Difference of means in the asked direction (fraction; NaN if a side is empty).
        se: Standard error of ``effect`` (NaN with fewer than two ok seeds on a side).
        subject: Accuracy of the method (unmodified).
        other: Accuracy of the reference method, or of the ablated method.
        meaning: What the answer says about the method, in words.
        min_effect: The smallest difference that counted (below it the text reads "within").
    """

    check: str
    sparsity: float
    answer: str
    effect: float
    se: float
    subject: Stat
    other: Stat
    meaning: str
    min_effect: float = MIN_EFFECT

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN becomes None), with the one-line text under ``"line"``."""
        data = dataclasses.asdict(self)
        data["line"] = self.line()
        return _no_nan(data)

    def line(self) -> str:
        """``beats random at 97.2 %: yes, 4.1 points above random (77.0 ± 0.4 vs 72.9 ± 0.5 %,
        se 0.6, 3 seeds) — meaning``; an ablation check reads "accuracy falls … when …"."""
        head = f"{self.check} at {100 * self.sparsity:.1f} %: {self.answer}"
        if math.isnan(self.effect):
            return f"{head} — {self.meaning}"
        check = check_named(self.check)
        n = min(self.subject.n, self.other.n)
        if check.reference is not None:
            compare = f"{self.subject.text()} vs {self.other.text()} %"
        else:
            compare = f"{self.subject.text()} → {self.other.text()} %"
        se = "" if math.isnan(self.se) else f", se {100 * self.se:.1f}"
        return (
            f"{head}, {check.words(self.effect, self.min_effect)} ({compare}{se}, {n} "
            f"seed{'s' * (n != 1)}) — {self.meaning}"
        )


def decide(effect: float, se: float, min_effect: float = MIN_EFFECT) -> str:
    """``yes`` / ``no`` / ``unclear`` for an effect and its standard error (module docstring)."""
    if math.isnan(effect) or math.isnan(se):
        return "unclear"
    if effect >= min_effect and effect > 2 * se:
        return "yes"
    if effect + 2 * se < min_effect or (effect < min_effect and se <= min_effect):
        return "no"
    return "unclear"


def accuracies(results: Iterable[dict[str, Any]]) -> dict[tuple[str, str, float], list[float]]:
    """Test accuracies of the ok and disconnected runs by (method, ablation, sparsity at 6 decimals).

    A run listed twice (same ``run_id``) counts once.
    """
    out: dict[tuple[str, str, float], list[float]] = {}
    seen: set[str] = set()
    for r in results:
        if r.get("run_id") in seen:
            continue
        seen.add(r.get("run_id"))  # type: ignore[arg-type]
        spec = r.get("spec") or {}
        # Keyed by the hashed name: two versions of a user's file never pool.
        label = method_label(spec, as_written=False)
        key = (label, spec.get("ablation"), round(float(spec.get("sparsity", 0)), 6))
        group = out.setdefault(key, [])  # type: ignore[arg-type]
        # A disconnected mask (every path cut) trained to chance is a real outcome, not a failure.
        if r.get("status") in ("ok", "disconnected") and r.get("test_accuracy") is not None:
            group.append(float(r["test_accuracy"]))
    return out


def verdicts(
    results: Iterable[dict[str, Any]],
    method: str,
    sparsities: Iterable[float],
    min_effect: float = MIN_EFFECT,
) -> list[Verdict]:
    """Every check of ``CHECKS`` for ``method`` at each sparsity, check by check.

    Args:
        results: Result dicts (``result.json``) holding the method's runs (none, shuffle,
            reinit, invert) and the reference methods' unmodified runs at the same sparsities.
        method: The method checked.
        sparsities: The sparsities to judge.
        min_effect: Smallest difference (fraction) that counts; 0.01 is one point.
    """
    acc = accuracies(results)
    out = []
    for check in CHECKS:
        if not_applicable(check, method):  # "random beats random" says nothing
            continue
        for s in sparsities:
            s = round(float(s), 6)
            subject = stat(acc.get((method, "none", s), []))
            if check.reference is not None:
                # A fused method is compared with the fused reference where the store has one
                # (same engine); its solo runs differ only in float rounding otherwise.
                fused = fused_label(check.reference) if is_fused(method) else None
                other = stat(
                    acc.get((fused, "none", s)) or acc.get((check.reference, "none", s), [])
                )
                effect = subject.mean - other.mean
            else:
                other = stat(acc.get((method, check.ablation, s), []))
                effect = subject.mean - other.mean
            se = math.sqrt(subject.std**2 / max(subject.n, 1) + other.std**2 / max(other.n, 1))
            answer = decide(effect, se, min_effect)
            meaning = {
                "yes": check.meaning_yes,
                "no": check.meaning_no,
                "unclear": "the difference is within seed noise: run more seeds"
                if not math.isnan(se)
                else "needs at least two ok seeds on each side",
            }[answer]
            out.append(
                Verdict(check.name, s, answer, effect, se, subject, other, meaning, min_effect)
            )
    return out


def _no_nan(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_no_nan(v) for v in value]
    return value


def verdict_matrix(
    results: Iterable[dict[str, Any]],
    methods: Iterable[str],
    sparsity: float,
    min_effect: float = MIN_EFFECT,
) -> str:
    """One row per method, one column per check: ``yes: 13.5 above`` (points), at one sparsity.

    A check that means nothing for a method (:func:`not_applicable`) reads ``n/a``; one without
    runs on both sides reads ``—``.
    """
    results = list(results)
    names = [c.column or c.name.replace("sensitive to ", "") for c in CHECKS]
    rows = [["method", *names]]
    for m in methods:
        found = {v.check: v for v in verdicts(results, m, [sparsity], min_effect)}
        cells = []
        for c in CHECKS:
            v = found.get(c.name)
            if v is None:
                cells.append("n/a" if not_applicable(c, m) else "—")
            elif math.isnan(v.effect):
                cells.append(v.answer)
            else:
                cells.append(f"{v.answer}: {c.words(v.effect, min_effect, short=True)}")
        rows.append([m, *cells])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    head = (
        f"the paper's checks at {100 * sparsity:.1f} % sparsity: verdict and difference in points "
        "(beats: the method's accuracy above or below the other's; the ablations: how far accuracy "
        "falls or rises when ablated; n/a: the check means nothing for that method)"
    )
    lines = [head]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines) + "\n"
