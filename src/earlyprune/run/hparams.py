"""Training hyperparameters as run fields: ``None`` (unset) means the preset's value.

Every field in ``HPARAMS`` is a ``RunSpec`` field, a CLI flag (``--lr``, ``--batch-size`` ...),
a TOML key and a sweep axis. Unset fields stay out of the run id, so every run id from before
these fields existed is unchanged; a set value is part of the id, even one equal to the
preset's (the spec records what was asked for). ``make_schedule`` is the one place the
effective values are decided.

No torch import here: the CLI builds its parser (and ``--help``) without loading torch.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from earlyprune.core.errors import SpecError

if TYPE_CHECKING:
    from earlyprune.run.spec import Preset, RunSpec
    from earlyprune.train.optim import Schedule

#: The hyperparameter fields of ``RunSpec``, in the order ``--help`` and ``list presets`` show.
HPARAMS = (
    "lr",
    "batch_size",
    "momentum",
    "weight_decay",
    "milestones",
    "gamma",
    "optimizer",
    "nesterov",
    "warmup_epochs",
    "label_smoothing",
    "rewind_step",
)
#: Those that change dense training, so the dense run a pruned run shares carries them.
#: ``rewind_step`` only picks which dense checkpoint LTR rewinds to.
DENSE_HPARAMS = tuple(h for h in HPARAMS if h != "rewind_step")
#: Settings no preset spells out: every preset trains this way (the paper's recipe).
FIXED = {"optimizer": "sgd", "nesterov": False, "warmup_epochs": 0.0, "label_smoothing": 0.0}
_FLOATS = ("lr", "momentum", "weight_decay", "gamma", "warmup_epochs", "label_smoothing")


def _number(name: str, value: Any, rule: str, ok: Any) -> None:
    """``SpecError`` unless ``value`` is a finite real number for which ``ok(value)`` holds."""
    real = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
    if not (real and ok(value)):
        raise SpecError(f"{name} must be a number {rule}, got {value!r}")


def _integer(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpecError(f"{name} must be an integer ≥ {minimum}, got {value!r}")


def validate_hparams(spec: RunSpec) -> None:
    """Range checks that need no data (``SpecError``); ``make_schedule`` checks the rest."""
    from earlyprune.run.limits import REWINDING
    from earlyprune.train.optim import OPTIMIZERS

    if spec.lr is not None:
        _number("lr", spec.lr, "> 0", lambda v: v > 0)
    if spec.batch_size is not None:
        _integer("batch_size", spec.batch_size, 1)
    if spec.momentum is not None:
        _number("momentum", spec.momentum, "in [0, 1)", lambda v: 0 <= v < 1)
    if spec.weight_decay is not None:
        _number("weight_decay", spec.weight_decay, "≥ 0", lambda v: v >= 0)
    if spec.gamma is not None:
        _number("gamma", spec.gamma, "> 0", lambda v: v > 0)
    if spec.warmup_epochs is not None:
        _number("warmup_epochs", spec.warmup_epochs, "≥ 0", lambda v: v >= 0)
    if spec.label_smoothing is not None:
        _number("label_smoothing", spec.label_smoothing, "in [0, 1)", lambda v: 0 <= v < 1)
    if spec.milestones is not None:
        ms = spec.milestones
        if not isinstance(ms, list | tuple):
            raise SpecError(f"milestones must be a list of epochs like [80, 120], got {ms!r}")
        for m in ms:
            _number("each milestone", m, "> 0 (epochs)", lambda v: v > 0)
        if list(ms) != sorted(set(ms)):
            raise SpecError(f"milestones must be strictly increasing, got {list(ms)}")
    if spec.optimizer is not None and spec.optimizer not in OPTIMIZERS:
        raise SpecError(
            f"unknown optimizer {spec.optimizer!r}; choose one of: {', '.join(OPTIMIZERS.names())}"
        )
    if spec.nesterov is not None and not isinstance(spec.nesterov, bool):
        raise SpecError(f"nesterov must be true or false, got {spec.nesterov!r}")
    if spec.optimizer not in (None, "sgd") and (spec.momentum, spec.nesterov) != (None, None):
        raise SpecError(
            f"momentum and nesterov are SGD settings; optimizer {spec.optimizer!r} "
            "uses torch's default betas (0.9, 0.999)"
        )
    if spec.rewind_step is not None:
        _integer("rewind_step", spec.rewind_step, 0)
        if spec.method not in REWINDING:
            raise SpecError(
                f"rewind_step applies to {', '.join(REWINDING)}, not to method "
                f"{spec.method!r} (use prune_step for pruning at step t)"
            )
        if spec.prune_step is not None and spec.prune_step != spec.rewind_step:
            raise SpecError(
                f"for {spec.method} the prune step is the rewind step: give "
                "rewind_step or prune_step, not two different values"
            )


def normalized(spec: RunSpec) -> dict[str, Any]:
    """The same values in one canonical type (so ``lr = 1`` and ``--lr 1`` are one run id)."""
    out: dict[str, Any] = {
        h: float(getattr(spec, h)) for h in _FLOATS if getattr(spec, h) is not None
    }
    if spec.milestones is not None:
        out["milestones"] = tuple(float(m) for m in spec.milestones)
    return out


def effective(spec: RunSpec, preset: Preset) -> dict[str, Any]:
    """Every hyperparameter's value for ``spec``: its own where set, else the preset's.

    Preset milestones are given as the preset defines them (in epochs of its own length);
    ``make_schedule`` moves them proportionally when ``epochs`` changes the length.
    """
    defaults = {**FIXED, **{h: getattr(preset, h) for h in HPARAMS if hasattr(preset, h)}}
    return {h: (defaults[h] if getattr(spec, h) is None else getattr(spec, h)) for h in HPARAMS}


def make_schedule(spec: RunSpec, preset: Preset, bundle: Any) -> Schedule:
    """The schedule in steps for ``spec`` on ``bundle``; ``SpecError`` if it exceeds training.

    User milestones and warmup are epochs of the run itself and are not rescaled by
    ``epochs``; the preset's milestones move with ``epochs`` (as they always have).
    """
    from earlyprune.train.optim import Schedule

    h = effective(spec, preset)
    epochs = spec.epochs if spec.epochs is not None else preset.epochs
    spe = bundle.steps_per_epoch(h["batch_size"])
    total = max(1, round(epochs * spe))
    if spec.milestones is None:
        milestones = tuple(round(m / preset.epochs * total) for m in preset.milestones)
    else:
        beyond = [m for m in spec.milestones if m > epochs]
        if beyond:
            raise SpecError(
                f"milestone(s) {', '.join(f'{m:g}' for m in beyond)} beyond "
                f"training ({epochs:g} epochs)"
            )
        milestones = tuple(round(m * spe) for m in spec.milestones)
    if h["warmup_epochs"] > epochs:
        raise SpecError(
            f"warmup_epochs {h['warmup_epochs']:g} is longer than training ({epochs:g} epochs)"
        )
    if h["optimizer"] == "sgd" and h["nesterov"] and h["momentum"] == 0:
        raise SpecError("nesterov needs momentum > 0")
    return Schedule(
        total_steps=total,
        steps_per_epoch=spe,
        batch_size=h["batch_size"],
        lr=h["lr"],
        milestones=milestones,
        gamma=h["gamma"],
        momentum=h["momentum"],
        weight_decay=h["weight_decay"],
        optimizer=h["optimizer"],
        nesterov=h["nesterov"],
        warmup_steps=round(h["warmup_epochs"] * spe),
        label_smoothing=h["label_smoothing"],
    )


def describe(spec: RunSpec) -> str:
    """The set hyperparameters as ``"  lr=0.05 optimizer=adamw"`` ('' when none is set)."""
    parts = []
    for h in HPARAMS:
        v = getattr(spec, h)
        if v is not None:
            shown = (",".join(f"{m:g}" for m in v) or "none") if h == "milestones" else v
            parts.append(f"{h}={shown if not isinstance(v, float) else f'{v:g}'}")
    return ("  " + " ".join(parts)) if parts else ""


def preset_values(preset: Preset) -> dict[str, Any]:
    """Everything a preset trains with, for ``earlyprune list presets``."""
    values: dict[str, Any] = {
        "model": preset.model,
        "dataset": preset.dataset,
        "epochs": preset.epochs,
    }
    values.update({h: getattr(preset, h, FIXED.get(h)) for h in HPARAMS})
    values["milestones"] = list(preset.milestones)
    values.update(train_subset=preset.train_subset, test_subset=preset.test_subset)
    return values
