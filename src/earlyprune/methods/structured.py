"""A scorer's mask within a structure (N:M, constant fan-in, whole channels).

``ep.prune(..., structure=...)`` decides the layer counts as it does without a structure (the
method's own global pruning, ``scope="layer"``'s uniform counts, or ``allocation``), then places
within the structure by one round of the placement's scores on the unpruned network: the
structure fixes the pattern, so rescoring the survivors round by round (SynFlow's 100 rounds)
applies to the counts, not to the placement. ``nm:N:M`` fixes every layer's count itself.
"""

from __future__ import annotations

import torch
from torch import nn

from earlyprune.masks.mask import Mask, full_mask
from earlyprune.masks.structure import Structure, nm_eligible, select_structured
from earlyprune.masks.structured_ablations import invert_structured
from earlyprune.methods.prepare import guarded_prepare
from earlyprune.methods.scoring import Batch, Method


def check_nm_sparsity(st: Structure, sparsity: float) -> None:
    """N:M fixes the sparsity at 1 − N/M: any other request is a mistake, said so."""
    if st.kind == "nm" and abs(sparsity - (1 - st.n / st.m)) > 1e-9:
        raise ValueError(
            f"structure {st} fixes the sparsity at {1 - st.n / st.m:g} (1 - N/M; layers ASP "
            f"skips stay dense, so the achieved sparsity is lower): use sparsity {1 - st.n / st.m:g}"
        )


def _nm_kept(mask: Mask, st: Structure) -> int:
    """Weights an N:M mask keeps: N/M of every eligible layer, all of the skipped ones."""
    return sum(
        t.numel() * st.n // st.m if nm_eligible(tuple(t.shape), st.m) else t.numel()
        for t in mask.values()
    )


def structured_mask(
    model: nn.Module,
    placer: Method,
    st: Structure,
    batch: Batch | None,
    seed: int,
    counts: dict[str, int] | None,
    invert: bool,
) -> Mask:
    """``placer``'s best (``invert``: worst) weights that ``st`` allows, ``counts`` per layer.

    Args:
        model: The network (left unchanged).
        placer: The scorer whose scores place the weights.
        st: The structure (not ``unstructured``).
        batch: The scoring batch.
        seed: The scorer's seed.
        counts: Kept weights per layer (None for ``nm``, which fixes them).
        invert: Keep the lowest scores instead (the invert ablation, within the structure).
    """
    full = full_mask(model)
    n_keep = _nm_kept(full, st) if counts is None else sum(counts.values())
    scorer = guarded_prepare(placer, model, batch, seed)
    scores = scorer(full, n_keep) if placer.budgeted else scorer(full)
    if invert:
        mask = invert_structured(scores, st, counts, model=model)
    else:
        mask = select_structured(scores, st, counts=counts, model=model)
    return {n: k.to(device=full[n].device, dtype=torch.bool) for n, k in mask.items()}
