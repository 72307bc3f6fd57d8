"""What a ``RunSpec`` resolves when it is made: user files to hashed names, IMP levels.

Called by ``RunSpec.__post_init__`` (and ``register_user_inputs`` by a worker that got the spec
by pickling); ``earlyprune.run.spec`` re-exports ``register_user_inputs``.
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

from earlyprune.core.errors import SpecError
from earlyprune.run.device_kinds import hashed_kind
from earlyprune.run.hparams import DENSE_HPARAMS
from earlyprune.run.limits import IMP, SPARSITY_DECIMALS
from earlyprune.run.presets import imp_sparsity
from earlyprune.run.spec_checks import check_int

if TYPE_CHECKING:
    from earlyprune.run.spec import RunSpec


class PresetWarning(UserWarning):
    """A run trains with a preset made for another dataset (allowed: own data needs one)."""


#: Numeric fields that accept numpy/torch scalars (converted to plain Python numbers).
NUMERIC_FIELDS = (
    "sparsity",
    "prune_step",
    "rounds",
    "seed",
    "epochs",
    "scoring_per_class",
    "scoring_micro_batch",
    "threads",
    "world_size",
)


def register_user_inputs(spec: RunSpec) -> None:
    """Registers the spec's own network and data in this process (a worker gets specs by
    pickling, which skips ``__post_init__``); a file changed since is a ``SpecError``."""
    from earlyprune.data.user import resolve_dataset
    from earlyprune.models.user import resolve_model

    resolve_model(spec.model, spec.model_file)
    resolve_dataset(spec.dataset, spec.dataset_file)
    _resolve_scorers(spec)


def resolve_user_inputs(spec: RunSpec) -> None:
    """``--model FILE.py:F`` / ``--dataset npz:FILE``: registered, stored as hashed names."""
    from earlyprune.data.user import resolve_dataset
    from earlyprune.models.user import resolve_model

    if isinstance(spec.model, str) and isinstance(spec.model_file, str):
        model, model_file = resolve_model(spec.model, spec.model_file)
        object.__setattr__(spec, "model", model)
        object.__setattr__(spec, "model_file", model_file)
    if isinstance(spec.dataset, str) and isinstance(spec.dataset_file, str):
        dataset, dataset_file = resolve_dataset(spec.dataset, spec.dataset_file)
        object.__setattr__(spec, "dataset", dataset)
        object.__setattr__(spec, "dataset_file", dataset_file)
    _resolve_scorers(spec)


def _resolve_scorers(spec: RunSpec) -> None:
    """``method``/``allocation``/``placement`` ``FILE.py:FUNC``: registered, stored hashed."""
    from earlyprune.methods.user import resolve_method

    for kind in ("method", "allocation", "placement"):
        name, file = resolve_method(kind, getattr(spec, kind), getattr(spec, f"{kind}_file"))
        object.__setattr__(spec, kind, name)
        object.__setattr__(spec, f"{kind}_file", file)


def resolve_levels(spec: RunSpec) -> None:
    """IMP: sparsity follows from the level; a grid sparsity without a level gives the level."""
    if spec.method != IMP:
        if spec.levels is not None:
            raise SpecError(f"levels is for method 'imp', not {spec.method!r}")
        return
    f = spec.level_fraction
    if isinstance(f, bool) or not isinstance(f, int | float) or not 0 < f < 1:
        raise SpecError(f"level_fraction must be a number in (0, 1), got {f!r}")
    object.__setattr__(spec, "level_fraction", float(f))
    if spec.levels is None:
        s = spec.sparsity
        found = [k for k in range(1, 200) if abs(imp_sparsity(k, f) - s) < 1e-6]
        if not found:
            raise SpecError(
                f"IMP with level_fraction {f:g} reaches only sparsities "
                f"1 − {1 - f:g}^k; {s!r} is not one: give levels"
            )
        object.__setattr__(spec, "levels", found[0])
    check_int("levels", spec.levels, 1)
    expected = imp_sparsity(spec.levels, f)
    if spec.sparsity not in (0, 0.0) and abs(spec.sparsity - expected) > 1e-6:
        raise SpecError(
            f"IMP level {spec.levels} has sparsity {expected}, not {spec.sparsity}: "
            "give levels or sparsity, not both"
        )
    object.__setattr__(spec, "sparsity", expected)


def canonical_sparsity(value: float) -> float:
    """The sparsity a run id hashes and the run computes with (``SPARSITY_DECIMALS``)."""
    s = round(float(value), SPARSITY_DECIMALS)
    if s >= 1.0:
        raise SpecError(
            f"sparsity must be a number in [0, 1), got {value!r} (1 at "
            f"{SPARSITY_DECIMALS} decimals)"
        )
    return s


def dense_fields(spec: RunSpec) -> dict[str, Any]:
    """The fields of the unpruned training run ``spec``'s weights and baselines come from."""
    return dict(
        dataset=spec.dataset,
        model=spec.model,
        preset=spec.preset,
        seed=spec.seed,
        epochs=spec.epochs,
        init=spec.effective_init,
        bn_gamma=spec.bn_gamma,
        precision=spec.precision,
        channels_last=spec.channels_last,
        device=spec.device,
        device_kind=spec.device_kind,
        model_file=spec.model_file,
        dataset_file=spec.dataset_file,
        bias_init=spec.bias_init,
        threads=spec.threads,
        world_size=spec.world_size,
        compile=spec.compile,
        autotune=spec.autotune,
        accumulate=spec.accumulate,
        **{h: getattr(spec, h) for h in DENSE_HPARAMS},
    )


def canonical_json(spec: RunSpec) -> str:
    """Sorted-key JSON of the hashed fields that differ from their defaults."""
    items = {}
    for f in dataclasses.fields(spec):
        value = getattr(spec, f.name)
        if f.name == "device_kind":
            value = hashed_kind(value)
        if f.metadata.get("hash", True) and value != f.default:
            items[f.name] = value
    return json.dumps(items, sort_keys=True, separators=(",", ":"))
