"""Sparse training (static, SET, RigL) and gradual magnitude pruning (GMP) as run methods.

Each method is one file registered in ``SPARSE_TRAINERS``; the pipeline asks this package for
the starting mask (:func:`starting_mask`) and the training hook (:func:`make_updater`), and
``RunSpec`` validation for the checks (:func:`validate_spec`, :func:`check_schedule`). The
hyperparameters are ``RunSpec`` fields (None = the method's default, resolved from the
training length by :func:`resolve_schedule`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from earlyprune.methods.sparse_training import gmp, rigl, static  # noqa: F401  (register)
from earlyprune.methods.sparse_training import set as _set  # noqa: F401  (register; keeps builtin set)
from earlyprune.methods.sparse_training.base import (
    DEFAULT_ALLOCATION,
    SPARSE_TRAINERS,
    SparseTrainer,
    UpdateContext,
    initial_mask,
    layer_counts,
    register_sparse_trainer,
)
from earlyprune.methods.sparse_training.schedule import (
    DROP_FRACTION,
    GMP_START_SHARE,
    UPDATE_END_SHARE,
    UpdateSchedule,
    default_interval,
)
from earlyprune.methods.sparse_training.updater import MaskUpdater

if TYPE_CHECKING:
    from torch import nn

    from earlyprune.masks.mask import Mask
    from earlyprune.run.spec import RunSpec
    from earlyprune.train.loop import Schedule

__all__ = [
    "METHODS_FOR_DEMO",
    "SPARSE_TRAINERS",
    "MaskUpdater",
    "SparseTrainer",
    "UpdateContext",
    "UpdateSchedule",
    "ablation_applies",
    "check_schedule",
    "initial_mask",
    "is_sparse_training",
    "layer_counts",
    "make_updater",
    "register_sparse_trainer",
    "resolve_schedule",
    "starting_mask",
    "validate_spec",
]

#: The sparse-training methods a full demo (`earlyprune demo --methods all`) adds.
METHODS_FOR_DEMO = ("static", "set", "rigl", "gmp")
#: RunSpec fields of this package → the methods they apply to.
FIELDS = {
    "drop_fraction": ("set", "rigl"),
    "update_interval": ("set", "rigl", "gmp"),
    "update_start": ("set", "rigl", "gmp"),
    "update_end": ("set", "rigl", "gmp"),
    "initial_sparsity": ("gmp",),
}
#: Ablations that make sense for a mask that is not chosen from the initial weights' scores.
ABLATIONS = ("none", "reinit", "init_normal")


def is_sparse_training(method: str) -> bool:
    return method in SPARSE_TRAINERS


def ablation_applies(method: str, ablation: str) -> bool:
    """False only for a sparse-training method with an ablation it refuses (sweeps skip those)."""
    return not is_sparse_training(method) or ablation in ABLATIONS


def validate_spec(spec: RunSpec) -> None:
    """Spec checks that need no data (``SpecError``, one line each)."""
    from earlyprune.core.errors import SpecError

    for name, methods in FIELDS.items():
        value = getattr(spec, name)
        if value is not None and spec.method not in methods:
            raise SpecError(
                f"{name} applies only to methods {', '.join(methods)}, not {spec.method!r}"
            )
    if not is_sparse_training(spec.method):
        return
    m = spec.method
    if spec.ablation not in ABLATIONS:
        raise SpecError(
            f"ablation {spec.ablation!r} does not apply to method {m!r} (its mask "
            f"is not scored at initialization); use one of: {', '.join(ABLATIONS)}"
        )
    if spec.prune_step is not None:
        raise SpecError(f"method {m!r} trains from step 0: prune_step does not apply")
    if spec.rounds is not None:
        raise SpecError(f"method {m!r} has no pruning rounds: use update_interval instead")
    _check_allocation(spec)
    if spec.scope != "global" and not SPARSE_TRAINERS.get(m).dense_start:
        raise SpecError(f"method {m!r} keeps its starting per-layer counts: scope does not apply")
    f = spec.drop_fraction
    if f is not None and (isinstance(f, bool) or not isinstance(f, int | float) or not 0 < f <= 1):
        raise SpecError(f"drop_fraction must be a number in (0, 1], got {f!r}")
    for name, low in (("update_interval", 1), ("update_start", 0), ("update_end", 1)):
        v = getattr(spec, name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < low):
            raise SpecError(f"{name} must be an integer ≥ {low}, got {v!r}")
    s = spec.initial_sparsity
    if s is not None and (
        isinstance(s, bool) or not isinstance(s, int | float) or not 0 <= s <= spec.sparsity
    ):
        raise SpecError(
            f"initial_sparsity must be a number in [0, sparsity={spec.sparsity}], got {s!r}"
        )


def _check_allocation(spec: RunSpec) -> None:
    from earlyprune.core.errors import SpecError
    from earlyprune.methods.allocation import ALLOCATIONS

    m = spec.method
    if SPARSE_TRAINERS.get(m).dense_start:
        for name in ("allocation", "placement"):
            if getattr(spec, name) is not None:
                raise SpecError(f"method {m!r} starts dense: {name} does not apply")
        return
    if spec.placement not in (None, "random"):
        raise SpecError(
            f"method {m!r} places its starting mask at random: placement "
            f"{spec.placement!r} does not apply"
        )
    if spec.allocation is not None and spec.allocation not in ALLOCATIONS:
        raise SpecError(
            f"method {m!r} needs a data-free allocation, one of: "
            f"{', '.join(ALLOCATIONS.names())}; got {spec.allocation!r}"
        )


def resolve_schedule(spec: RunSpec, total_steps: int) -> UpdateSchedule:
    """The run's update schedule with every default filled in from the training length.

    SET/RigL: start 0, end 75 % of training, ΔT 100, α 0.3. GMP: t₀ at 20 %, end 75 %,
    Δt 100, s_i 0. A run too short for ΔT = 100 (fewer than 10 updates) gets a smaller one.
    """
    gmp_like = SPARSE_TRAINERS.get(spec.method).dense_start
    end = spec.update_end if spec.update_end is not None else round(UPDATE_END_SHARE * total_steps)
    share = GMP_START_SHARE if gmp_like else 0.0
    start = spec.update_start if spec.update_start is not None else round(share * total_steps)
    interval = spec.update_interval or default_interval(start, end)
    return UpdateSchedule(
        start=start,
        end=end,
        interval=interval,
        drop_fraction=DROP_FRACTION if spec.drop_fraction is None else float(spec.drop_fraction),
        initial_sparsity=float(spec.initial_sparsity or 0.0),
        final_sparsity=spec.sparsity,
        scope=spec.scope,
    )


def check_schedule(spec: RunSpec, total_steps: int) -> None:
    """Checks the schedule against the training length (``SpecError``)."""
    from earlyprune.core.errors import SpecError

    if not is_sparse_training(spec.method):
        return
    sched = resolve_schedule(spec, total_steps)
    if sched.end > total_steps:
        raise SpecError(f"update_end {sched.end} is beyond training ({total_steps} steps)")
    if sched.start > sched.end:
        raise SpecError(f"update_start {sched.start} is after update_end {sched.end}")


def starting_mask(spec: RunSpec, model: nn.Module) -> Mask:
    """The mask training starts from: full for GMP, allocation + random placement otherwise."""
    from earlyprune.masks.mask import full_mask

    if SPARSE_TRAINERS.get(spec.method).dense_start:
        return full_mask(model)
    return initial_mask(model, spec.sparsity, spec.seed, spec.allocation or DEFAULT_ALLOCATION)


def make_updater(spec: RunSpec, sched: Schedule, mask: Mask | None) -> MaskUpdater | None:
    """The training hook of a sparse-training run (None for every other method)."""
    if mask is None or not is_sparse_training(spec.method):
        return None
    schedule = resolve_schedule(spec, sched.total_steps)
    return MaskUpdater(SPARSE_TRAINERS.get(spec.method), mask, schedule, spec.seed)


def describe(spec: RunSpec, total_steps: int) -> dict[str, Any]:
    """``{"mask_updates": resolved schedule}`` for ``result.json``; empty for other methods."""
    import dataclasses

    if not is_sparse_training(spec.method):
        return {}
    return {"mask_updates": dataclasses.asdict(resolve_schedule(spec, total_steps))}
