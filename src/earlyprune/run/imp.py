"""Iterative magnitude pruning with rewinding (IMP), as open_lth runs it.

Level k (``method="imp", levels=k``) takes level k − 1's trained weights and mask (level 0 is
the dense training run), removes ``level_fraction`` (20 %) of the survivors by magnitude — so
that exactly ``round(s_k · N)`` weights are gone, s_k = 1 − 0.8^k, the paper's grid — rewinds the
survivors to the rewind step t (0 = the original lottery ticket: the initialization; otherwise
the dense run's weights at step t, like LTR) and retrains with the full schedule. The rewind
step is the run's prune step (``Setup.prune_step``; unset: ``stages.default_rewind_step``).

Every level is a stored run of its own. Level k reads level k − 1's ``final.pt`` and ``mask.pt``
from the store and runs level k − 1 first only if it is not stored (which recurses down to the
first missing level), so levels 1..18 of a sweep cost 18 trainings and every level's mask is a
subset of the previous one's. An ablation (shuffle, reinit, invert) applies to the run's own
level only; the levels below it are the unmodified IMP chain.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from earlyprune.core.errors import SpecError
from earlyprune.masks.connectivity import DisconnectedMask, check_connected
from earlyprune.masks.mask import Mask, check_mask, density_schedule, full_mask, prunable, select
from earlyprune.run.spec import IMP, RunSpec, imp_sparsity
from earlyprune.run.stages import Setup, dense_weights, fresh_model
from earlyprune.run.store import RunStore

#: Ablations that modify one level's mask or weights; the levels below it stay unmodified.
_LEVEL_ABLATIONS = ("shuffle", "reinit", "invert")


def previous_spec(spec: RunSpec) -> RunSpec:
    """The run level ``spec.levels`` builds on: level k − 1, or the dense run for k = 1."""
    if spec.method != IMP or spec.levels is None:
        raise ValueError(f"not an IMP run: {spec.method!r}")
    if spec.levels == 1:
        return spec.dense_spec()
    ablation = "none" if spec.ablation in _LEVEL_ABLATIONS else spec.ablation
    k = spec.levels - 1
    return spec.replace(levels=k, sparsity=imp_sparsity(k, spec.level_fraction), ablation=ablation)


def previous_level(setup: Setup, store: RunStore) -> tuple[dict[str, Any], Mask]:
    """Level k − 1's trained weights and mask (the dense run's final weights and a full mask
    for k = 1).

    The pipeline has run level k − 1 first (it is a prerequisite of the IMP recipe); this only
    reads it, and raises on every rank under torchrun if it is not usable.
    """
    spec = setup.spec
    if spec.levels == 1:
        model = fresh_model(setup)
        return dense_weights(setup, store, None), full_mask(model)
    prev = previous_spec(spec)
    result = store.read_result(prev.run_id)
    status = "missing" if result is None else result["status"]
    if status not in ("ok", "disconnected"):  # a cut level's survivors stay cut
        raise RuntimeError(
            f"IMP level {prev.levels} ({prev.run_id}), which level "
            f"{spec.levels} builds on, is {status}"
        )
    final = store.load_tensors(prev.run_id, "final.pt")
    mask = store.load_tensors(prev.run_id, "mask.pt")
    if final is None or mask is None:
        raise RuntimeError(
            f"IMP level {prev.levels} ({prev.run_id}) has no stored final "
            "weights or mask (final.pt, mask.pt)"
        )
    return final["model"], mask


def level_mask(setup: Setup, model: nn.Module, prev_mask: Mask) -> Mask:
    """Removes the smallest-magnitude survivors of level k − 1 (``prev_mask``; ``model`` holds
    level k − 1's trained weights) down to the level's sparsity."""
    spec = setup.spec
    mask = {n: m.to(setup.device) for n, m in check_mask(model, prev_mask).items()}
    scores = {n: p.detach().abs() for n, p in prunable(model).items()}
    if spec.ablation == "invert":
        scores = {n: -s for n, s in scores.items()}
    total = sum(m.numel() for m in mask.values())
    n_keep = density_schedule(spec.sparsity, 1, total)[-1]
    mask = select(scores, n_keep, mask, spec.scope, density=1 - spec.sparsity)
    if not spec.allow_disconnected:  # as for every other method (ep.prune)
        try:
            check_connected(model, mask, tuple(setup.bundle.input_shape))
        except DisconnectedMask as exc:
            raise SpecError(f"{exc}") from None
    return mask
