"""Run specifications and their ids (the presets live in ``earlyprune.run.presets``).

A ``RunSpec`` is frozen; its id is a short hash of the canonical JSON of the fields that differ
from their defaults, so adding a field with a default never renames old runs (pinned in tests).
"""

from __future__ import annotations

import dataclasses
import hashlib
import warnings
from dataclasses import dataclass
from typing import Any

from earlyprune.core.errors import SpecError
from earlyprune.core.scalars import plain_number
from earlyprune.run.device_kinds import resolve_kind
from earlyprune.run.hparams import normalized
from earlyprune.run.limits import (  # noqa: F401  (re-exported: spec is where users look)
    BASELINES,
    DENSE,
    IMP,
    MAX_ROUNDS,
    REWINDING,
    SEED_LIMIT,
    SPARSITY_DECIMALS,
)
from earlyprune.run.presets import (  # noqa: F401  (re-exported: spec is where users look)
    DEFAULT_PRESET,
    PRESETS,
    Preset,
    default_preset,
    imp_sparsity,
    paper_sparsities,
)
from earlyprune.run.settings import _milestones, _sparsity, setting
from earlyprune.run.spec_checks import canonical_structure, validate
from earlyprune.run.spec_inputs import (  # noqa: F401  (register_user_inputs: re-exported)
    NUMERIC_FIELDS,
    PresetWarning,
    canonical_json,
    canonical_sparsity,
    dense_fields,
    register_user_inputs,
    resolve_levels,
    resolve_user_inputs,
)

#: Why the ``*_file`` fields have no flag.
_DERIVED = "set from the name flag's FILE.py:FUNC"


@dataclass(frozen=True)
class RunSpec:
    """One experiment: network, data, training, pruning, ablation and seed.

    ``prune_step`` None means the method's default: 0 for pruning at initialization, the
    rewind step (``rewind_step``, else the preset's) for ``ltr`` and ``imp``. ``epochs`` overrides
    the preset's length; the preset's LR drops move proportionally. The training hyperparameters
    (``lr`` ... ``rewind_step``, see ``earlyprune.run.hparams``) are None = the preset's value.
    ``device`` and ``allow_disconnected`` are not part of the run's identity.

    ``threads`` (CPU thread count the run pins) and ``world_size`` (torchrun processes; BatchNorm
    statistics are per rank) change numbers, so they are in the identity when not 1.
    """

    dataset: str = setting(
        "dataset name (see `earlyprune list`), npz:FILE.npz or FILE.py:LOADER",
        "fashion-mnist-mini",
        flag_default=None,
        required=True,
    )
    model: str = setting(
        "network name, FILE.py:FACTORY or pkg.module:FACTORY (default: the preset's network)",
        "smallcnn",
        flag_default=None,
    )
    preset: str = setting("training preset (default: the dataset's)", "demo", flag_default=None)
    method: str = setting(
        "pruning method, 'dense', FILE.py:FUNC or pkg.module:FUNC (your scorer)",
        DENSE,
        flag_default=None,
        required=True,
    )
    sparsity: float = setting(
        "fraction removed, [0, 1) (imp: follows from --levels)",
        0.0,
        flag_default=None,
        parse=_sparsity,
    )
    prune_step: int | None = setting(
        "prune after T training steps (default: 0; ltr/imp: the rewind step)"
    )
    rounds: int | None = setting("pruning rounds (default: method's)")
    scope: str = setting("global|layer", "global")
    ablation: str = setting("none|shuffle|reinit|invert|init_normal", "none")
    seed: int = setting("replicate seed (init, data order, ...)", 0)
    epochs: float | None = setting(
        "shorten/lengthen the preset; its LR drops move proportionally (default: preset)"
    )
    init: str = setting(
        "weight initialization: kaiming_fan_in|kaiming_fan_out|normal",
        "kaiming_fan_in",
        not_a_flag="the paper's init; set in a sweep (ablation init_normal changes it)",
    )
    bn_gamma: str = setting(
        "BatchNorm γ initialization: uniform (U(0, 1), as the paper)|one",
        "uniform",
        not_a_flag="an experiment of its own, set in a sweep",
    )
    scoring_per_class: int = setting(
        "examples per class in the scoring batch",
        10,
        not_a_flag="the paper's batch; set in a sweep",
    )
    # In the id when set: with BatchNorm each chunk is normalized by its own statistics (see
    # methods.micro_batch), and without it the summation order moves the last bits.
    scoring_micro_batch: int | None = setting(
        "score the scoring batch in chunks of this many examples (SNIP, GraSP, FORCE, ProsPr)"
    )
    precision: str = setting("fp32|tf32|bf16 (tf32: TF32 products on CUDA GPUs)", "fp32")
    channels_last: bool = setting(
        "channels-last memory format in training",
        True,
        not_a_flag="on by default; turned off in a sweep",
    )
    bias_init: str = setting("default (PyTorch's, as the authors)|zero", "default")
    # Not in the run id (like ``device``): it changes no numbers, only whether a degenerate mask
    # is refused; a permission of the command (every sweep grants it), neither hashed nor stored.
    allow_disconnected: bool = setting(
        "train a mask even if it leaves no input→output path (stored with status "
        "'disconnected'; sweeps always do this)",
        False,
        hash=False,
        stored=False,
    )
    # None = the method's own (its scores, or a baseline's rule): unset fields stay out of the id.
    allocation: str | None = setting("layer counts: erk|er|uniform|... or a scorer")
    placement: str | None = setting("weights within a layer: random|magnitude|scorer")
    structure: str = setting("mask pattern: unstructured|nm:N:M|fanin|channel", "unstructured")
    # Sparse training / gradual pruning (methods.sparse_training): None = the method's default.
    drop_fraction: float | None = setting(
        "SET/RigL drop fraction α, cosine-decayed (default 0.3)", group="sparse"
    )
    update_interval: int | None = setting(
        "steps between mask updates ΔT (default 100; fewer on short runs)", group="sparse"
    )
    update_start: int | None = setting(
        "first update step (default 0; GMP: 20% of training)", group="sparse"
    )
    update_end: int | None = setting(
        "last update step T_end (default 75% of training)", group="sparse"
    )
    initial_sparsity: float | None = setting(
        "GMP's starting sparsity s_i (default 0)", group="sparse"
    )
    device: str = setting("auto|cpu|cuda|cuda:N", "auto", hash=False)
    device_kind: str | None = setting(
        "kind of device computing the run: cpu or cuda-sm<NN>-<card> (in the id unless cpu)",
        not_a_flag="resolved from --device on the machine that makes the spec",
    )
    # Where a user's file lies (its content-hashed name is in model/dataset/method, in the id).
    model_file: str = setting(
        "absolute path of --model FILE.py", "", not_a_flag=_DERIVED, hash=False
    )
    dataset_file: str = setting(
        "absolute path of --dataset's file", "", not_a_flag=_DERIVED, hash=False
    )
    method_file: str = setting(
        "absolute FILE.py:FUNC of --method", "", not_a_flag=_DERIVED, hash=False
    )
    allocation_file: str = setting(
        "absolute FILE.py:FUNC of --allocation", "", not_a_flag=_DERIVED, hash=False
    )
    placement_file: str = setting(
        "absolute FILE.py:FUNC of --placement", "", not_a_flag=_DERIVED, hash=False
    )
    # IMP: this run's level k (sparsity 1 − (1 − level_fraction)^k).
    levels: int | None = setting("imp: pruning levels, each removing 20% of the survivors")
    level_fraction: float = setting(
        "imp: the fraction of the survivors each level removes",
        0.2,
        not_a_flag="the paper's 20%; set in a sweep",
    )
    # Training hyperparameters (earlyprune.run.hparams): None = the preset's, out of the hash.
    lr: float | None = setting("learning rate (default: preset)", group="hparams")
    batch_size: int | None = setting("training batch size (default: preset)", group="hparams")
    momentum: float | None = setting("SGD momentum (default: preset)", group="hparams")
    weight_decay: float | None = setting("weight decay (default: preset)", group="hparams")
    milestones: tuple[float, ...] | None = setting(
        "epochs after which the LR is multiplied by gamma, e.g. 80,120, or 'none' (default: "
        "preset, moved proportionally with --epochs)",
        parse=_milestones,
        group="hparams",
    )
    gamma: float | None = setting("LR drop factor (default: preset)", group="hparams")
    optimizer: str | None = setting("sgd|adam|adamw (default: preset = sgd)", group="hparams")
    nesterov: bool | None = setting(
        "Nesterov momentum, SGD only (default: preset = off)", group="hparams"
    )
    warmup_epochs: float | None = setting(
        "linear LR warmup from lr/steps over this many epochs (default: preset = 0)",
        group="hparams",
    )
    label_smoothing: float | None = setting(
        "label smoothing of the training loss (default: preset = 0)", group="hparams"
    )
    rewind_step: int | None = setting(
        "LTR: the step the weights are rewound to (default: preset)", group="hparams"
    )
    threads: int = setting("CPU threads the run pins (part of the run id when not 1)", 1)
    engine: str = setting("solo|fused (trained in a pack)", "solo", not_a_flag="set by --fuse K")
    world_size: int = setting(
        "torchrun processes that train the run",
        1,
        not_a_flag="set from torchrun's WORLD_SIZE",
    )
    # Opt-in speed and memory modes (earlyprune.train.modes): each changes numbers, so each is
    # in the id when set; unset, ids are as before.
    compile: bool = setting(
        "torch.compile the network for training and evaluation (in the run id: compiled "
        "kernels round differently)",
        False,
    )
    autotune: bool = setting(
        "CUDA only: cuDNN autotuning and nondeterministic kernels, faster; re-runs and "
        "resumes are then not bit-identical (in the run id)",
        False,
    )
    accumulate: int = setting(
        "split each training batch into this many micro-batches, gradients summed: the "
        "memory of batch/k, BatchNorm statistics per micro-batch as on k GPUs (in the run id)",
        1,
        group="hparams",
    )

    def __post_init__(self) -> None:
        for name in NUMERIC_FIELDS:  # np.int64(3), torch.tensor(0.9): plain Python numbers
            object.__setattr__(self, name, plain_number(getattr(self, name)))
        resolve_user_inputs(self)
        object.__setattr__(self, "device_kind", resolve_kind(self))
        object.__setattr__(self, "structure", canonical_structure(self.structure))
        resolve_levels(self)
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
            # Stored before kinds were recorded: its id was a CPU id, whatever computed it.
            return cls(**{"device_kind": "cpu", **data})

    def replace(self, **changes: Any) -> RunSpec:
        return dataclasses.replace(self, **changes)

    @property
    def effective_init(self) -> str:
        return "normal" if self.ablation == "init_normal" else self.init

    def dense_spec(self) -> RunSpec:
        """The unpruned training run this spec's weights and baselines come from."""
        with warnings.catch_warnings():  # its preset was warned about with this spec
            warnings.simplefilter("ignore", PresetWarning)
            return RunSpec(**dense_fields(self))
