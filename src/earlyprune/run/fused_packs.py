"""Which runs may train together in one fused pack, and how pending runs form packs.

Members of a pack share everything that shapes a training step — network, data, preset,
length, training hyperparameters, precision, device — and may differ in what only decides
their starting point: method, sparsity, prune step, ablation, seed, initialization. Every
``RunSpec`` field not named in :data:`MEMBER_FIELDS` must agree, so a field added later is
shared (the safe side) until someone decides otherwise.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from earlyprune.core.errors import SpecError
from earlyprune.methods.sparse_training import is_sparse_training
from earlyprune.run.spec import IMP, RunSpec

#: Fields that may differ between members: they decide a member's weights and mask before the
#: pack trains (scoring, pruning at step t and the ablations stay per run), not the steps.
MEMBER_FIELDS = frozenset(
    {
        "method",
        "sparsity",
        "prune_step",
        "rounds",
        "scope",
        "ablation",
        "seed",
        "init",
        "bn_gamma",
        "bias_init",
        "scoring_per_class",
        "allow_disconnected",
        "allocation",
        "placement",
        "method_file",
        "allocation_file",
        "placement_file",
        "rewind_step",
    }
)


def shared_fields() -> tuple[str, ...]:
    """The ``RunSpec`` fields every member of a pack must agree on."""
    return tuple(f.name for f in dataclasses.fields(RunSpec) if f.name not in MEMBER_FIELDS)


def fusable_alone(spec: RunSpec) -> str | None:
    """Why ``spec`` can never be a pack member, or None if it can."""
    if is_sparse_training(spec.method):
        # Their masks move during training (drop/grow hooks on the dense gradients); the
        # engine stacks fixed masks only.
        return f"method {spec.method!r} updates its mask during training (sparse training)"
    if spec.method == IMP:
        return "method 'imp' trains each level on the previous level's result"
    if spec.world_size != 1:
        return f"world_size {spec.world_size}: a pack trains in one process"
    if spec.accumulate != 1:
        return f"accumulate {spec.accumulate}: a pack steps on whole batches"
    if spec.compile or spec.autotune:
        return "compile and autotune apply to the solo training loop"
    return None


def check_fusable(specs: Sequence[RunSpec]) -> None:
    """Raises a one-line ``SpecError`` naming why ``specs`` cannot train as one pack.

    Raises:
        SpecError: If there are no specs, two are the same run, one cannot be fused at all
            (sparse training, IMP, several processes) or two differ in a shared field.
    """
    if not specs:
        raise SpecError("a fused pack needs at least one run")
    ids = [s.run_id for s in specs]
    if len(set(ids)) != len(ids):
        raise SpecError("a fused pack holds each run once; the same run was given twice")
    for spec in specs:
        why = fusable_alone(spec)
        if why is not None:
            raise SpecError(f"run {spec.run_id} cannot be fused: {why}")
    first = specs[0]
    for spec in specs[1:]:
        for name in shared_fields():
            a, b = getattr(first, name), getattr(spec, name)
            if a != b:
                raise SpecError(
                    f"runs {first.run_id} and {spec.run_id} cannot share a fused pack: "
                    f"different {name} ({a!r} vs {b!r})"
                )


def pack_key(spec: RunSpec) -> tuple[object, ...] | None:
    """The value all members of a pack share (None: ``spec`` always trains solo)."""
    if fusable_alone(spec) is not None:
        return None
    return tuple(repr(getattr(spec, name)) for name in shared_fields())


def packs(specs: Sequence[RunSpec], k: int) -> list[list[RunSpec]]:
    """Groups ``specs`` into packs of at most ``k`` compatible runs, in order of appearance.

    Runs that cannot be fused form packs of one; a run given twice appears once. Each pack
    passes :func:`check_fusable`.

    Raises:
        SpecError: If ``k`` is not a positive integer.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise SpecError(f"--fuse takes a positive whole number of runs per pack, got {k!r}")
    out: list[list[RunSpec]] = []
    open_packs: dict[tuple[object, ...], list[RunSpec]] = {}
    seen: set[str] = set()
    for spec in specs:
        if spec.run_id in seen:
            continue
        seen.add(spec.run_id)
        key = pack_key(spec)
        if key is None or k == 1:
            out.append([spec])
            continue
        group = open_packs.get(key)
        if group is None or len(group) == k:
            group = []
            open_packs[key] = group
            out.append(group)
        group.append(spec)
    return out
