"""The paper's sanity checks, and which of them mean something for which method.

Each check compares two groups of runs (same sparsity, different method or ablation) by their
test accuracies over seeds; :mod:`earlyprune.analysis.verdicts` decides and words the answer.
Method labels (``method_label``, ``recipe``) live here too: applicability is read off them.

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

from dataclasses import dataclass
from typing import Any

#: The smallest difference of accuracies worth reporting (a fraction: one percentage point).
MIN_EFFECT = 0.01

#: Methods whose mask is a data-free allocation with random placement: ``random`` (global
#: random scores) and every registered allocation's baseline method (a test checks this list).
RANDOM_SPARSE = ("random", "erk", "er", "uniform", "uniform_plus", "smart_ratio")
#: Placements that choose weights at random within a layer.
RANDOM_PLACEMENTS = ("random",)


def method_label(spec: dict[str, Any], as_written: bool = True) -> str:
    """The method a run used, with allocation, placement, structure and engine: ``snip[alloc=erk]``.

    Runs that only differ in allocation or placement are different methods to every table,
    verdict and figure; with neither set the label is the method's name. A run trained in a
    fused pack is ``snip[fused]``: it differs from its solo twin only in ``engine`` and in the
    last bits of its numbers, and a mean never pools the two. A user's own function
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
    if spec.get("structure") not in (None, "unstructured"):  # snip[nm:2:4] is not snip either
        parts.append(str(spec["structure"]))
    if spec.get("engine") not in (None, "solo"):  # snip[fused]: its numbers differ in the last bits
        parts.append(str(spec["engine"]))
    return f"{name('method')}[{','.join(parts)}]" if parts else name("method")


def fused_label(label: str) -> str:
    """``label`` for the runs of a fused pack (``engine = "fused"``): ``snip`` → ``snip[fused]``."""
    name, _, rest = label.partition("[")
    parts = [p for p in rest.rstrip("]").split(",") if p]
    return f"{name}[{','.join([*parts, 'fused'])}]"


def is_fused(label: str) -> bool:
    """Whether a method label names runs trained in fused packs."""
    return "fused" in label.partition("[")[2].rstrip("]").split(",")


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
        """The difference in words, direction included (``earlyprune.analysis.verdicts``).

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
