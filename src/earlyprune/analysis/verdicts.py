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

Which checks mean something for which method (``not_applicable``) follows from how the method
builds its mask: an allocation (how many weights each layer keeps) and a placement (which ones).
A method label ``m[alloc=a,place=p]`` uses allocation ``a`` and placement ``p``; a bare name uses
its own, except the random-sparse baselines of ``RANDOM_SPARSE`` (``random``, and every
registered allocation's baseline method ``erk``, ``er``, ``uniform``, ...): random placement, with
a data-free allocation that looks at neither weights nor data. Then:

- "beats X" means nothing for X itself, or for any label with X's allocation and placement
  (``random[alloc=erk]`` is ERK with random placement);
- the shuffle check (the method's own allocation with random placement) means nothing for a
  method whose placement is already random: shuffling draws another mask of the same kind;
- reinitialization and inversion mean nothing for a random-sparse baseline: its mask ignores the
  weights' values, so fresh weights or inverted (random) scores give runs of the same distribution.

Every other check applies to every method. This module reads result dicts only (``result.json``
contents) and never imports torch, so the baselines are listed here; a test keeps the list equal
to the method and allocation registries.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

MIN_EFFECT = 0.01


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


#: Methods whose mask is a data-free allocation with random placement: ``random`` (global
#: random scores) and every registered allocation's baseline method (a test checks this list).
RANDOM_SPARSE = ("random", "erk", "er", "uniform", "uniform_plus", "smart_ratio")
#: Placements that choose weights at random within a layer.
RANDOM_PLACEMENTS = ("random",)


@dataclass(frozen=True)
class Check:
    """One sanity check: which group is compared with which, and what each answer means.

    ``question`` is the check's column heading in the report; ``versus`` names the other side in
    words: the reference (``"random"``) of a "beats" check, or what the ablation does
    (``"when inverted"``) for an ablation check.
    """

    name: str
    ablation: str  # the ablation of the compared group ("none" for comparisons with a method)
    reference: str | None  # a reference method (beats-checks) or None (ablation checks)
    meaning_yes: str
    meaning_no: str
    column: str = ""  # heading in ``verdict_matrix`` (default: the name)
    question: str = ""  # heading in the report's verdict table (default: the name + "?")
    versus: str = ""  # the other side in words (default: the reference, or "with <ablation>")

    @property
    def heading(self) -> str:
        return self.question or f"{self.name[:1].upper()}{self.name[1:]}?"

    def words(self, effect: float, min_effect: float = MIN_EFFECT, short: bool = False) -> str:
        """The difference in words, direction included (module docstring).

        Args:
            effect: The verdict's effect (method − reference; unmodified − ablated), a fraction.
            min_effect: Below this size the difference reads "within …".
            short: Leave out what the column heading says (for ``verdict_matrix``).
        """
        size = f"{100 * abs(effect):.1f}"
        small = abs(effect) < min_effect
        if self.reference is not None:
            other = self.versus or self.reference
            if short:
                return f"within {size}" if small else f"{size} {'above' if effect > 0 else 'below'}"
            if small:
                return f"within {size} points of {other}"
            return f"{size} points {'above' if effect > 0 else 'below'} {other}"
        done = self.versus or f"with {self.ablation}"
        if short:
            return f"within {size}" if small else f"{'falls' if effect > 0 else 'rises'} {size}"
        if small:
            return f"accuracy stays within {size} points {done}"
        return f"accuracy {'falls' if effect > 0 else 'rises'} {size} points {done}"


CHECKS = (
    Check(
        "beats random",
        "none",
        "random",
        "its choices are better than uniform random pruning",
        "no better than pruning at random",
        question="Beats random?",
    ),
    Check(
        "beats magnitude",
        "none",
        "magnitude",
        "better than pruning the smallest initial weights",
        "no better than pruning the smallest initial weights",
        question="Beats magnitude?",
    ),
    # Beyond the paper: the strongest data-free layer-wise baseline (Evci et al. 2020; Liu et
    # al. 2022), and the paper's shuffle ablation said as what it is: the method's own
    # allocation (layer counts) with random placement.
    Check(
        "beats ERK with random placement",
        "none",
        "erk",
        "better than ERK's layer-wise densities with randomly placed weights",
        "no better than ERK's layer-wise densities with randomly placed weights",
        "beats erk",
        question="Beats ERK (random placement)?",
        versus="ERK",
    ),
    Check(
        "beats its own allocation with random placement (shuffle)",
        "shuffle",
        None,
        "per-weight choices matter beyond layer-wise proportions",
        "per-weight choices carry no information beyond layer-wise proportions",
        "beats shuffle",
        question="Beats its own allocation? (shuffled)",
        versus="when shuffled",
    ),
    Check(
        "sensitive to reinitialization",
        "reinit",
        None,
        "the kept weights' initial values matter",
        "the mask works as well with freshly drawn weights",
        question="Needs its initial weights? (reinitialized)",
        versus="when reinitialized",
    ),
    Check(
        "sensitive to inversion",
        "invert",
        None,
        "its ranking matters: keeping the lowest scores is worse",
        "keeping the lowest-scoring weights works as well: the ranking carries no information",
        question="Does its ranking matter? (inverted)",
        versus="when inverted",
    ),
)


def check_named(name: str) -> Check:
    """The check of ``CHECKS`` called ``name`` (a stand-in for an unknown one, for old files)."""
    for check in CHECKS:
        if check.name == name:
            return check
    if name.startswith("beats "):
        return Check(name, "none", name.removeprefix("beats "), "", "")
    return Check(name, "", None, "", "", versus="when ablated")


def recipe(method: str) -> tuple[str, str]:
    """(allocation, placement) of a method label: ``snip[place=random]`` → (snip, random).

    A bare random-sparse baseline (``erk``) is its own allocation with random placement;
    ``random`` is its own (global) allocation with random placement; any other bare method
    decides both itself.
    """
    name, _, rest = method.partition("[")
    parts = dict(p.split("=", 1) for p in rest.rstrip("]").split(",") if "=" in p)
    own_placement = "random" if name in RANDOM_SPARSE else name
    return parts.get("alloc", name), parts.get("place", own_placement)


def not_applicable(check: Check, method: str) -> str | None:
    """Why ``check`` means nothing for ``method`` (a method label), or None when it applies.

    The rule is in the module docstring.
    """
    allocation, placement = recipe(method)
    randomly_placed = placement in RANDOM_PLACEMENTS
    if check.reference is not None:
        if recipe(check.reference) == (allocation, placement):
            return f"{method} is {check.versus or check.reference} itself"
        return None
    if check.ablation == "shuffle" and randomly_placed:
        return (
            f"{method} already places its weights at random within each layer: shuffling "
            "draws another mask of the same kind"
        )
    if check.ablation in ("reinit", "invert") and randomly_placed and allocation in RANDOM_SPARSE:
        what = "fresh weights" if check.ablation == "reinit" else "inverted (random) scores"
        return (
            f"{method}'s mask looks at neither weights nor data: {what} give runs of the "
            "same distribution"
        )
    return None


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


def method_label(spec: dict[str, Any], as_written: bool = True) -> str:
    """The method a run used, with its allocation and placement when set: ``snip[alloc=erk]``.

    Runs that only differ in allocation or placement are different methods to every table,
    verdict and figure; with neither set the label is the method's name. A user's own function
    (stored as ``stem:func@digest`` with its ``FILE.py:FUNC`` in ``method_file``) is named as
    the user wrote it, ``my_scores.py:score`` (``as_written=False``: the hashed name, which
    keeps two versions of one file apart; the report falls back to it when a store holds both).
    """

    def name(key: str) -> str:
        file = spec.get(f"{key}_file") if as_written else None
        if isinstance(file, str) and ":" in file:
            where, _, func = file.rpartition(":")
            return f"{where.replace(chr(92), '/').rsplit('/', 1)[-1]}:{func}"
        return str(spec.get(key))

    parts = [f"{key[:5]}={name(key)}" for key in ("allocation", "placement") if spec.get(key)]
    return f"{name('method')}[{','.join(parts)}]" if parts else name("method")


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
                other = stat(acc.get((check.reference, "none", s), []))
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
