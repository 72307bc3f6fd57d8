"""The paper's sanity-check ablations (Section 5): each is one small function."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from earlyprune.core import rng
from earlyprune.masks.mask import Mask

#: Ablation name → what it does; the pipeline applies them (see ``pipeline.py``).
ABLATIONS: dict[str, str] = {
    "none": "the method's own mask and weights",
    "shuffle": "permute the mask uniformly at random within each layer (layer counts kept)",
    "reinit": "draw fresh weights from the same initializer for the pruned network",
    "invert": "remove the highest-scoring weights instead of the lowest",
    "init_normal": "initialize every weight from N(0, 1) instead of He before pruning",
}


def check_ablation(name: str) -> str:
    if name not in ABLATIONS:
        raise ValueError(f"unknown ablation {name!r}; choose one of: {', '.join(ABLATIONS)}")
    return name


def shuffle(mask: Mapping[str, Tensor], seed: int) -> Mask:
    """Randomly permutes each layer's mask: per-layer proportions stay, positions are forgotten.

    The permutations come from the ``"shuffle"`` stream of ``seed`` (:func:`earlyprune.core.rng.generator`),
    so ``seed`` may be the run's own seed.
    """
    gen = rng.generator(seed, "shuffle")
    out: Mask = {}
    for name, m in mask.items():
        flat = m.reshape(-1)
        perm = torch.randperm(flat.numel(), generator=gen).to(flat.device)
        out[name] = flat[perm].reshape(m.shape)
    return out


def reinitialize(
    model: nn.Module,
    seed: int,
    init: str = "kaiming_fan_in",
    bn_gamma: str = "uniform",
    bias: str = "default",
) -> None:
    """Redraws every weight of ``model`` in place from the same initializer, with a new seed.

    The new weights come from the ``"reinit"`` stream of ``seed`` (:func:`earlyprune.core.rng.generator`),
    never from the ``"init"`` stream of a model built with that seed: ``seed`` may be the run's
    own. Apply the mask afterwards (``apply_mask``): the pruned network keeps its structure, not
    its values.
    """
    from earlyprune.models import initialize

    gen = rng.generator(seed, "reinit")
    initialize(model, init=init, bn_gamma=bn_gamma, generator=gen, bias=bias)
