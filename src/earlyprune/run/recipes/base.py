"""The fixed interface of a recipe: one kind of run, as Section 3 of the paper describes it.

A recipe says which stored runs it builds on (``prerequisites``), which network it scores
(``weights_to_prune``), how it chooses the mask (``choose_mask``) and which weights it then
trains (``weights_to_train``). ``pipeline.run`` calls these in order; the defaults below are
pruning at initialization, so a recipe overrides only the steps where its kind differs.
"""

from __future__ import annotations

from torch import nn

from earlyprune.core.errors import SpecError
from earlyprune.masks.connectivity import DisconnectedMask
from earlyprune.masks.mask import Mask
from earlyprune.masks.structured_ablations import shuffle_structured
from earlyprune.methods import ablations
from earlyprune.methods.api import prune
from earlyprune.run.spec import RunSpec
from earlyprune.run.stages import Setup, dense_weights, fresh_model
from earlyprune.run.store import RunStore


class Recipe:
    """One kind of run. Subclasses are stateless and registered once (``recipes.RECIPES``).

    Attributes:
        name: The kind's name in the registry.
        prunes: Whether the run has a mask at all (the dense run has none).
        moves_mask: Whether training moves the mask (sparse training keeps its final mask).
    """

    name = "at_init"
    prunes = True
    moves_mask = False

    def prerequisites(self, spec: RunSpec) -> list[RunSpec]:
        """The stored runs this run starts from, in the order they must run."""
        return []

    def weights_to_prune(self, setup: Setup, store: RunStore) -> nn.Module:
        """The network whose weights are scored (at initialization by default)."""
        return fresh_model(setup)

    def choose_mask(self, setup: Setup, store: RunStore, model: nn.Module) -> Mask:
        """Scores ``model`` and keeps the top weights (computed once, on rank 0)."""
        return scored_mask(setup, model, setup.spec.method)

    def weights_to_train(self, setup: Setup, store: RunStore, model: nn.Module) -> nn.Module:
        """The network to retrain: the scored one, re-initialized by the reinit ablation."""
        return reinit_ablation(setup, model)

    def kept_steps(self, setup: Setup) -> list[int]:
        """Training steps whose checkpoints other runs reuse (only the dense run keeps any)."""
        return []


def scored_mask(setup: Setup, model: nn.Module, method: str) -> Mask:
    """Scores with ``method`` and selects (iteratively where it needs); ``invert`` flips it."""
    from earlyprune.data import scoring_batch

    spec = setup.spec
    batch = scoring_batch(
        setup.bundle, per_class=spec.scoring_per_class, seed=spec.seed, device=setup.device
    )
    try:
        return prune(
            model,
            method,
            spec.sparsity,
            batch=batch,
            rounds=spec.rounds,
            scope=spec.scope,
            invert=spec.ablation == "invert",
            seed=spec.seed,
            allocation=spec.allocation,
            placement=spec.placement,
            allow_disconnected=spec.allow_disconnected,
            structure=spec.structure,
            micro_batch=spec.scoring_micro_batch,
        )
    except DisconnectedMask as exc:  # a user mistake (refused, not stored as failed)
        raise SpecError(f"{exc}") from None
    except ValueError as exc:  # a method with no micro-batched form: the flag was wrong
        if spec.scoring_micro_batch is None or "micro-batches" not in str(exc):
            raise
        raise SpecError(f"--scoring-micro-batch: {exc}") from None


def ablate_mask(setup: Setup, mask: Mask, model: nn.Module) -> Mask:
    """The shuffle ablation: the method's per-layer proportions at random positions.

    Under a structure the shuffle keeps it: whole N:M groups, each unit's fan-in, or each tied
    group's channel count move (``masks.structured_ablations``).
    """
    spec = setup.spec
    if spec.ablation == "shuffle" and spec.structure != "unstructured":
        return shuffle_structured(mask, spec.structure, seed=spec.seed, model=model)
    if spec.ablation == "shuffle":
        return ablations.shuffle(mask, seed=spec.seed)
    return mask


def reinit_ablation(setup: Setup, model: nn.Module) -> nn.Module:
    """The reinit ablation: the survivors get fresh random values (the mask is kept)."""
    spec = setup.spec
    if spec.ablation == "reinit":
        ablations.reinitialize(
            model,
            seed=spec.seed,
            init=spec.effective_init,
            bn_gamma=spec.bn_gamma,
            bias=spec.bias_init,
        )
    return model


def rewound(setup: Setup, store: RunStore, model: nn.Module) -> nn.Module:
    """The survivors rewound to step t: the initialization (t = 0) or the dense run's step t."""
    if setup.prune_step == 0:
        return fresh_model(setup)
    model.load_state_dict(dense_weights(setup, store, setup.prune_step))
    return model
