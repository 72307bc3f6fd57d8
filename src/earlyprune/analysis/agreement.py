"""Mask agreement: how much two methods' masks overlap, and how stable one method's choice is.

Jaccard overlap of the kept weights, over all prunable tensors together: ``|A ∩ B| / |A ∪ B|``.
Between two methods it is averaged over the seeds both have (the same seed means the same
initial weights, so the masks differ only by the method's choice); for one method across seeds
it is averaged over every pair of its seeds. Two independent uniformly random masks of density
``d`` overlap ``d / (2 − d)`` in expectation, the level at which "agreement" means nothing.

This is the report's one optional step that reads more than ``result.json``: the stored masks
(``<store>/<run_id>/mask.pt``) need torch to load. Without torch the report says so in one line
and goes on; the rest of :mod:`earlyprune.analysis` never imports torch.
"""

from __future__ import annotations

import functools
import html
import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from earlyprune.analysis.aggregate import focus_sparsity, main_rows
from earlyprune.analysis.names import METHOD_ORDER, method_label, ordered

MASK_FILE = "mask.pt"
NO_TORCH = "Mask agreement: not computed (reading the stored mask.pt files needs torch)."


@dataclass(frozen=True)
class Agreement:
    """Mean Jaccard overlap of the masks of one (model, dataset) at one sparsity.

    Attributes:
        sparsity: The sparsity compared.
        why: Why that sparsity (see :func:`focus_sparsity`).
        jaccard: Methods × methods; the diagonal is one method across its seeds (NaN with a
            single seed), off-diagonal cells two methods on the same seeds.
        pairs: How many mask pairs each cell averages.
        chance: ``d / (2 − d)``: two independent random masks of this density.
    """

    sparsity: float
    why: str
    jaccard: pd.DataFrame
    pairs: pd.DataFrame
    chance: float


@functools.cache
def torch_available() -> bool:
    """Whether torch can be imported (it is only needed to read ``mask.pt``)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """``|a ∩ b| / |a ∪ b|`` of two boolean arrays of one shape (1.0 when both are empty)."""
    union = int(np.count_nonzero(a | b))
    return 1.0 if union == 0 else int(np.count_nonzero(a & b)) / union


def mask_agreement(store: Path, runs: pd.DataFrame) -> Agreement | None:
    """The agreement table of one (model, dataset), from its runs' stored masks.

    Args:
        store: The run store.
        runs: That setting's rows of :func:`load_results`. Unmodified runs at each method's
            lowest prune step are used, at the sparsity most methods share (the highest such).

    Returns:
        None when no method has a readable mask, or torch is absent.
    """
    if not torch_available():
        return None
    plain = runs[
        (runs["ablation"] == "none") & (runs["method"] != "dense") & (runs["sparsity"] > 0)
    ]
    plain = main_rows(plain)
    masks = {
        rid: m for rid in plain["run_id"] if (m := _load(store / str(rid) / MASK_FILE)) is not None
    }
    plain = plain[plain["run_id"].isin(masks)]
    if plain.empty:
        return None
    available = {m: set(g["sparsity"]) for m, g in plain.groupby("method")}
    sparsity, why = focus_sparsity(available, None)
    at = plain[np.isclose(plain["sparsity"], sparsity)]
    methods = ordered(at["method"], METHOD_ORDER)
    seeds = at["seed"] if "seed" in at.columns else pd.Series(0, index=at.index)
    by: dict[str, dict[int, np.ndarray]] = {m: {} for m in methods}
    for rid, method, seed in zip(at["run_id"], at["method"], seeds, strict=True):
        by[method][int(seed)] = masks[rid]
    jac = pd.DataFrame(np.nan, index=methods, columns=methods)
    pairs = pd.DataFrame(0, index=methods, columns=methods)
    for a, b in itertools.combinations_with_replacement(methods, 2):
        if a == b:
            values = [
                jaccard(x, y)
                for x, y in itertools.combinations(by[a].values(), 2)
                if x.shape == y.shape
            ]
        else:
            values = [
                jaccard(by[a][s], by[b][s])
                for s in by[a]
                if s in by[b] and by[a][s].shape == by[b][s].shape
            ]
        if values:
            jac.loc[a, b] = jac.loc[b, a] = float(np.mean(values))
        pairs.loc[a, b] = pairs.loc[b, a] = len(values)
    density = 1.0 - sparsity
    return Agreement(sparsity, why, jac, pairs, density / (2.0 - density))


def _load(path: Path) -> np.ndarray | None:
    """All of one mask's tensors, flattened into one boolean array (None if unreadable)."""
    import torch

    if not path.is_file():
        return None
    try:
        mask = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a damaged file is a missing mask here, never a failed report
        return None
    if not isinstance(mask, dict) or not mask:
        return None
    try:
        return np.concatenate([t.bool().reshape(-1).numpy() for t in mask.values()])
    except (AttributeError, TypeError, RuntimeError):
        return None


def agreement_html(found: Agreement) -> str:
    """The agreement matrix as an HTML table, with the number of mask pairs behind each cell."""
    esc = html.escape
    methods = list(found.jaccard.index)
    head = "".join(f"<th>{esc(method_label(m))}</th>" for m in methods)
    body = []
    for a in methods:
        cells = []
        for b in methods:
            value, pairs = found.jaccard.loc[a, b], int(found.pairs.loc[a, b])
            text = "—" if math.isnan(value) else f"{value:.3f} ({pairs})"
            cells.append(f"<td>{esc(text)}</td>")
        body.append(f'<tr><th scope="row">{esc(method_label(a))}</th>{"".join(cells)}</tr>')
    return (
        f"<table>\n<caption>Mask agreement at {100 * found.sparsity:.1f}% sparsity "
        f"({esc(found.why)}): Jaccard overlap of kept weights (mask pairs); diagonal: across "
        f"seeds; independent random masks: {found.chance:.3f}</caption>\n"
        f"<thead><tr><th>Method</th>{head}</tr></thead>\n<tbody>\n"
        + "\n".join(body)
        + "\n</tbody>\n</table>\n"
    )
