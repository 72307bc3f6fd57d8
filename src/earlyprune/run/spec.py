"""Run specifications and their ids (the presets live in ``earlyprune.run.presets``).

A ``RunSpec`` is frozen; its id is a short hash of the canonical JSON of the fields that differ
from their defaults, so adding a field with a default never renames old runs (pinned in tests).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from dataclasses import dataclass, field
from typing import Any

from earlyprune.core.errors import SpecError
from earlyprune.core.scalars import plain_number
from earlyprune.run.hparams import DENSE_HPARAMS, normalized
from earlyprune.run.limits import (  # noqa: F401  (re-exported: spec is where users look)
    _DEVICE,
    BASELINES,
    DENSE,
    IMP,
    MAX_ROUNDS,
    PRECISIONS,
    REWINDING,
    SEED_LIMIT,
    SPARSITY_DECIMALS,
)
from earlyprune.run.presets import (  # noqa: F401  (re-exported: spec is where users look)
    CUSTOM_PRESET,
    DEFAULT_PRESET,
    PRESETS,
    Preset,
    default_preset,
    imp_sparsity,
    paper_sparsities,
)
from earlyprune.run.spec_checks import check_int as _check_int
from earlyprune.run.spec_checks import validate

#: Numeric fields that accept numpy/torch scalars (converted to plain Python numbers).
_NUMERIC = (
    "sparsity",
    "prune_step",
    "rounds",
    "seed",
    "epochs",
    "scoring_per_class",
    "threads",
    "world_size",
)


def _no_hash() -> dict[str, Any]:
    return {"hash": False}


class PresetWarning(UserWarning):
    """A run trains with a preset made for another dataset (allowed: own data needs one)."""


@dataclass(frozen=True)
class RunSpec:
    """One experiment: network, data, training, pruning, ablation and seed.

    ``prune_step`` None means the method's default: 0 for pruning at initialization, the
    rewind step (``rewind_step``, else the preset's) for ``ltr`` and ``imp``. ``epochs`` overrides
    the preset's length; the preset's LR drops move proportionally. The training hyperparameters
    (``lr`` ... ``rewind_step``, see ``earlyprune.run.hparams``) are None = the preset's value.
    ``device`` and ``allow_disconnected`` are not part of the run's identity.

    ``threads`` is the intra-op CPU thread count the run pins for its whole duration, however it
    is launched (CPU results depend on it); ``world_size`` the number of torchrun processes that
    train it (BatchNorm statistics are per rank). Both are part of the identity when not 1.
    """

    dataset: str = "fashion-mnist-mini"
    model: str = "smallcnn"
    preset: str = "demo"
    method: str = DENSE
    sparsity: float = 0.0
    prune_step: int | None = None
    rounds: int | None = None
    scope: str = "global"
    ablation: str = "none"
    seed: int = 0
    epochs: float | None = None
    init: str = "kaiming_fan_in"
    bn_gamma: str = "uniform"
    scoring_per_class: int = 10
    precision: str = "fp32"
    channels_last: bool = True
    bias_init: str = (
        "default"  # "zero": all Conv/Linear biases 0 (default: PyTorch's, as the authors)
    )
    # Train a mask that cuts every input→output path. Not in the run id (like ``device``): it
    # never changes a run's numbers, only whether a degenerate mask is refused.
    # A permission of the command that runs it (every sweep grants it), not a property of the
    # run: neither hashed nor stored, so a run's record never depends on who ran it.
    allow_disconnected: bool = field(default=False, metadata={"hash": False, "stored": False})
    # None = the method's own (its scores, or a baseline's rule): unset fields stay out of the id.
    allocation: str | None = None
    placement: str | None = None
    # Sparse training / gradual pruning (earlyprune.methods.sparse_training): None = the method's default.
    drop_fraction: float | None = None
    update_interval: int | None = None
    update_start: int | None = None
    update_end: int | None = None
    initial_sparsity: float | None = None
    device: str = field(default="auto", metadata=_no_hash())
    # Where the user's network / data file lies (absolute); ``model``/``dataset`` then hold the
    # content-hashed name that is part of the id (see earlyprune.models.user, data.user).
    model_file: str = field(default="", metadata=_no_hash())
    dataset_file: str = field(default="", metadata=_no_hash())
    # The same for a user scorer (``--method/--allocation/--placement FILE.py:FUNC``): the field
    # holds ``stem:func@digest``, these the absolute ``FILE.py:FUNC`` (earlyprune.core.user_functions).
    method_file: str = field(default="", metadata=_no_hash())
    allocation_file: str = field(default="", metadata=_no_hash())
    placement_file: str = field(default="", metadata=_no_hash())
    # IMP: this run's level k (sparsity 1 − (1 − level_fraction)^k) and the fraction of the
    # survivors each level removes.
    levels: int | None = None
    level_fraction: float = 0.2
    # Training hyperparameters (earlyprune.run.hparams): None = the preset's value, out of the hash.
    lr: float | None = None
    batch_size: int | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    milestones: tuple[float, ...] | None = None  # epochs; () = no LR drops
    gamma: float | None = None
    optimizer: str | None = None
    nesterov: bool | None = None
    warmup_epochs: float | None = None
    label_smoothing: float | None = None
    rewind_step: int | None = None
    threads: int = 1
    world_size: int = 1

    def __post_init__(self) -> None:
        for name in _NUMERIC:  # np.int64(3), torch.tensor(0.9): plain Python numbers
            object.__setattr__(self, name, plain_number(getattr(self, name)))
        _resolve_user_inputs(self)
        _resolve_levels(self)
        validate(self)
        preset = PRESETS.get(self.preset)
        if preset.dataset and preset.dataset != self.dataset:  # allowed, never silently
            warnings.warn(
                f"preset {preset.name!r} was made for {preset.dataset}, not {self.dataset}",
                PresetWarning,
                stacklevel=3,  # __post_init__ ← __init__ ← the caller
            )
        # One experiment, one id: `epochs=1` (TOML) and `--epochs 1` (CLI float) must not hash
        # differently, so numbers that may be given either way are stored as floats.
        object.__setattr__(self, "sparsity", canonical_sparsity(self.sparsity))
        for name in ("epochs", "drop_fraction", "initial_sparsity"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, float(getattr(self, name)))
        for name, value in normalized(self).items():
            object.__setattr__(self, name, value)

    @property
    def run_id(self) -> str:
        """12 hex digits of SHA-256 over the canonical JSON of the non-default fields."""
        return hashlib.sha256(canonical_json(self).encode()).hexdigest()[:12]

    def to_dict(self) -> dict[str, Any]:
        """The fields a run's record stores (``spec.json``, ``result.json``)."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.metadata.get("stored", True)
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSpec:
        """Builds a spec from a mapping; unknown keys are a ``SpecError`` naming the valid ones."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise SpecError(
                f"unknown run field(s) {', '.join(unknown)}; valid fields: {', '.join(sorted(names))}"
            )
        with warnings.catch_warnings():  # a stored spec: warned about when it was made
            warnings.simplefilter("ignore", PresetWarning)
            return cls(**data)

    def replace(self, **changes: Any) -> RunSpec:
        return dataclasses.replace(self, **changes)

    @property
    def effective_init(self) -> str:
        return "normal" if self.ablation == "init_normal" else self.init

    def dense_spec(self) -> RunSpec:
        """The unpruned training run this spec's weights and baselines come from."""
        with warnings.catch_warnings():  # its preset was warned about with this spec
            warnings.simplefilter("ignore", PresetWarning)
            return self._dense_spec()

    def _dense_spec(self) -> RunSpec:
        return RunSpec(
            dataset=self.dataset,
            model=self.model,
            preset=self.preset,
            seed=self.seed,
            epochs=self.epochs,
            init=self.effective_init,
            bn_gamma=self.bn_gamma,
            precision=self.precision,
            channels_last=self.channels_last,
            device=self.device,
            model_file=self.model_file,
            dataset_file=self.dataset_file,
            bias_init=self.bias_init,
            threads=self.threads,
            world_size=self.world_size,
            **{h: getattr(self, h) for h in DENSE_HPARAMS},
        )


def register_user_inputs(spec: RunSpec) -> None:
    """Registers the spec's own network and data in this process (a worker gets specs by
    pickling, which skips ``__post_init__``); a file changed since is a ``SpecError``."""
    from earlyprune.data.user import resolve_dataset
    from earlyprune.models.user import resolve_model

    resolve_model(spec.model, spec.model_file)
    resolve_dataset(spec.dataset, spec.dataset_file)
    _resolve_scorers(spec)


def _resolve_user_inputs(spec: RunSpec) -> None:
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


def _resolve_levels(spec: RunSpec) -> None:
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
    _check_int("levels", spec.levels, 1)
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


def canonical_json(spec: RunSpec) -> str:
    """Sorted-key JSON of the hashed fields that differ from their defaults."""
    items = {}
    for f in dataclasses.fields(spec):
        value = getattr(spec, f.name)
        if f.metadata.get("hash", True) and value != f.default:
            items[f.name] = value
    return json.dumps(items, sort_keys=True, separators=(",", ":"))
