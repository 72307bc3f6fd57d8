"""Validation of a ``RunSpec``: names against the registries, numbers against their ranges.

Called by ``RunSpec.__post_init__``; every mistake is one ``SpecError`` line.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from earlyprune.core.errors import SpecError
from earlyprune.run.hparams import validate_hparams

if TYPE_CHECKING:
    from earlyprune.run.spec import RunSpec


def check_choice(kind: str, value: Any, valid: list[str] | tuple[str, ...]) -> None:
    if value not in valid:
        raise SpecError(f"unknown {kind} {value!r}; choose one of: {', '.join(valid)}")


def check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpecError(f"{name} must be an integer ≥ {minimum}, got {value!r}")


def validate(spec: RunSpec) -> None:
    """Checks names against the registries and numbers against their ranges (``SpecError``)."""
    from earlyprune.data import DATASETS
    from earlyprune.methods.ablations import ABLATIONS  # here: parsing a command needs no torch
    from earlyprune.methods.scoring import METHODS
    from earlyprune.methods.sparse_training import SPARSE_TRAINERS, validate_spec
    from earlyprune.models import BIAS_INITS, BN_GAMMAS, INITS, MODELS
    from earlyprune.run.limits import _DEVICE, BASELINES, DENSE, IMP, PRECISIONS
    from earlyprune.run.presets import PRESETS

    check_choice("dataset", spec.dataset, DATASETS.names())
    check_choice("model", spec.model, MODELS.names())
    check_choice("preset", spec.preset, PRESETS.names())
    check_choice(
        "method", spec.method, [DENSE, *METHODS.names(), *BASELINES, IMP, *SPARSE_TRAINERS.names()]
    )
    check_choice("ablation", spec.ablation, list(ABLATIONS))
    check_choice("scope", spec.scope, ("global", "layer"))
    check_choice("init", spec.init, INITS)
    check_choice("bn_gamma", spec.bn_gamma, BN_GAMMAS)
    check_choice("bias_init", spec.bias_init, BIAS_INITS)
    if not isinstance(spec.allow_disconnected, bool):
        raise SpecError(
            f"allow_disconnected must be true or false, got {spec.allow_disconnected!r}"
        )
    check_choice("precision", spec.precision, PRECISIONS)
    check_choice("engine", spec.engine, ("solo", "fused"))
    s = spec.sparsity
    if isinstance(s, bool) or not isinstance(s, int | float) or not 0.0 <= s < 1.0:
        raise SpecError(f"sparsity must be a number in [0, 1), got {s!r}")
    if spec.method == DENSE and s != 0:
        raise SpecError("method 'dense' trains the unpruned network: sparsity must be 0")
    if spec.method != DENSE and s == 0:
        raise SpecError(f"method {spec.method!r} with sparsity 0 is the dense run: use 'dense'")
    if spec.method == DENSE and spec.ablation not in ("none", "init_normal"):
        raise SpecError(f"ablation {spec.ablation!r} needs a pruning method, not 'dense'")
    check_composition(spec)
    check_structure(spec)
    _check_numbers(spec)
    validate_spec(spec)
    if not isinstance(spec.channels_last, bool):
        raise SpecError(f"channels_last must be true or false, got {spec.channels_last!r}")
    if not isinstance(spec.device, str) or not spec.device:
        raise SpecError(
            f"device must be a string like 'cpu', 'cuda' or 'auto', got {spec.device!r}"
        )
    if not _DEVICE.match(spec.device):  # mps, xpu, meta...: refused before anything is written
        raise SpecError(
            f"device {spec.device!r} cannot run earlyprune; use 'auto', 'cpu', 'cuda' or 'cuda:N'"
        )
    validate_hparams(spec)
    _check_modes(spec)


def _check_modes(spec: RunSpec) -> None:
    """``compile``, ``autotune`` and ``accumulate``: their types, and where they apply."""
    for name in ("compile", "autotune"):
        if not isinstance(getattr(spec, name), bool):
            raise SpecError(f"{name} must be true or false, got {getattr(spec, name)!r}")
    check_int("accumulate", spec.accumulate, 1)
    if spec.accumulate > 1:
        _check_accumulate(spec)
    if spec.autotune and not str(spec.device_kind).startswith("cuda"):
        raise SpecError(
            f"autotune picks cuDNN kernels on CUDA GPUs; this run's device kind is "
            f"{spec.device_kind} (to plan GPU runs on a machine without one, give their "
            "device_kind)"
        )
    for name in ("compile", "autotune"):
        if getattr(spec, name) and spec.engine != "solo":
            raise SpecError(
                f"{name} applies to the solo training loop, not to the fused engine (it trains a "
                f"pack through torch.func.vmap): leave {name} out of fused runs"
            )
    if spec.compile and spec.world_size != 1:
        raise SpecError(
            f"compile is not supported under torchrun (world_size {spec.world_size}, "
            "DistributedDataParallel): run without --compile"
        )


def _check_accumulate(spec: RunSpec) -> None:
    """k micro-batches of equal size, and a solo run (a fused pack's step is one batch)."""
    from earlyprune.run.hparams import effective
    from earlyprune.run.presets import PRESETS

    k, batch = spec.accumulate, effective(spec, PRESETS.get(spec.preset))["batch_size"]
    if batch % k:
        raise SpecError(
            f"accumulate {k} does not divide the batch size {batch} into equal micro-batches: "
            f"use a divisor of {batch}, or another --batch-size"
        )
    if spec.engine != "solo":
        raise SpecError(
            f"accumulate {k} is not supported by the fused engine (a pack trains whole "
            "batches): train the run solo, without --fuse"
        )


def _check_numbers(spec: RunSpec) -> None:
    """Steps, rounds, seed, thread and process counts and epochs against their ranges."""
    from earlyprune.run.limits import BASELINES, DENSE, MAX_ROUNDS, SEED_LIMIT

    if spec.prune_step is not None:
        check_int("prune_step", spec.prune_step, 0)
    if spec.rounds is not None:
        check_int("rounds", spec.rounds, 1)
    check_int("seed", spec.seed, 0)
    if spec.seed >= SEED_LIMIT:
        raise SpecError(
            f"seed must be below 2**63 (torch's generators take 64-bit seeds), got {spec.seed}"
        )
    if spec.rounds is not None and spec.rounds > MAX_ROUNDS:
        raise SpecError(
            f"rounds {spec.rounds} is more than {MAX_ROUNDS}: each round is a full "
            "scoring pass (SynFlow uses 100)"
        )
    if spec.rounds is not None and spec.method in (DENSE, *BASELINES):
        raise SpecError(
            f"rounds does nothing for method {spec.method!r} (it prunes once, or not "
            "at all): leave --rounds out"
        )
    check_int("threads", spec.threads, 1)
    check_int("world_size", spec.world_size, 1)
    check_int("scoring_per_class", spec.scoring_per_class, 1)
    if spec.scoring_micro_batch is not None:
        check_int("scoring_micro_batch", spec.scoring_micro_batch, 1)
    if spec.epochs is not None and (
        isinstance(spec.epochs, bool)
        or not isinstance(spec.epochs, int | float)
        or not math.isfinite(spec.epochs)
        or spec.epochs <= 0
    ):
        raise SpecError(f"epochs must be a positive number, got {spec.epochs!r}")


def check_composition(spec: RunSpec) -> None:
    """``allocation`` and ``placement``: registered names, and only where something is pruned."""
    from earlyprune.methods.allocation import ALLOCATIONS
    from earlyprune.methods.placement import placement_names
    from earlyprune.methods.scoring import METHODS
    from earlyprune.run.limits import DENSE

    for kind, value in (("allocation", spec.allocation), ("placement", spec.placement)):
        if value is None:
            continue
        if spec.method == DENSE:
            raise SpecError(f"{kind} {value!r} needs a pruning method, not 'dense'")
        valid = [*ALLOCATIONS.names(), *(n for n in METHODS.names() if n not in ALLOCATIONS)]
        check_choice(kind, value, valid if kind == "allocation" else placement_names())
    if spec.allocation is not None and spec.scope != "global":
        raise SpecError(
            f"scope {spec.scope!r} and allocation {spec.allocation!r} both set the "
            "layer counts: use allocation 'uniform' for the same sparsity per layer"
        )


def canonical_structure(text: Any) -> str:
    """``RunSpec.structure`` in its canonical form (``NM:2:4`` → ``nm:2:4``), or a ``SpecError``."""
    from earlyprune.masks.structure import parse_structure

    try:
        return str(parse_structure(text))
    except ValueError as exc:
        raise SpecError(str(exc)) from None


def check_structure(spec: RunSpec) -> None:
    """A structure needs a one-shot scored mask; N:M fixes the sparsity and the layer counts."""
    from earlyprune.masks.structure import parse_structure
    from earlyprune.run.limits import DENSE, IMP

    st = parse_structure(spec.structure)
    if st.kind == "unstructured":
        return
    if spec.method == DENSE:
        raise SpecError(f"structure {st} needs a pruning method, not 'dense'")
    if spec.method == IMP or _is_sparse_training(spec.method):
        raise SpecError(
            f"structure {st} is not supported for method {spec.method!r} (its masks move or "
            "compound): use a scorer, magnitude_after_training or ltr"
        )
    if st.kind != "nm":
        return
    if spec.allocation is not None or spec.scope != "global":
        raise SpecError(f"structure {st} fixes every layer's count: leave allocation and scope out")
    if abs(spec.sparsity - (1 - st.n / st.m)) > 1e-9:
        raise SpecError(
            f"structure {st} fixes the sparsity at {1 - st.n / st.m:g} (1 - N/M; layers ASP "
            f"skips stay dense, so the achieved sparsity is lower): use sparsity {1 - st.n / st.m:g}"
        )


def _is_sparse_training(method: str) -> bool:
    from earlyprune.methods.sparse_training import is_sparse_training

    return is_sparse_training(method)
