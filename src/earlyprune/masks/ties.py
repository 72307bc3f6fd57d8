"""The warning for equal scores split by a selection threshold (told apart by order, not score)."""

from __future__ import annotations

import warnings

from earlyprune.masks.mask import Mask, Scores


def warn_straddling_ties(scores: Scores, before: Mask, after: Mask, scope: str) -> None:
    """Warns (one line) when equal scores were split by the threshold: some removed, some kept.

    Such weights were told apart by network order, not by the method (e.g. constant or
    infinite scores, or many zero gradients at a high sparsity).
    """
    groups = [[n] for n in after] if scope == "layer" else [list(after)]
    for names in groups:
        kept = [scores[n][after[n]] for n in names if bool(after[n].any())]
        gone = [scores[n][before[n] & ~after[n]] for n in names]
        gone = [g for g in gone if g.numel()]
        if not kept or not gone:
            continue
        low = min(float(k.min()) for k in kept) + 0.0  # + 0.0: a tie at -0.0 prints as 0
        high = max(float(g.max()) for g in gone)
        if low == high:  # the threshold itself was shared by a kept and a removed weight
            tied = sum(int((scores[n][before[n]] == low).sum()) for n in names)
            removed = sum(int((g == low).sum()) for g in gone)
            where = f" in {names[0]}" if scope == "layer" else ""
            warnings.warn(
                f"{tied:,} weights{where} share the threshold score {low:g}; {removed:,} of them "
                "were removed by network order, not by score",
                RuntimeWarning,
                stacklevel=4,  # warn_straddling_ties ← _prune_scored or _place ← prune ← caller
            )
