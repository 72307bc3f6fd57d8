"""The kind of device in a run's identity: resolved when the spec is made, checked where it runs.

A ``RunSpec``'s ``device_kind`` is resolved from its ``device`` on the machine that makes the
spec (``auto``: the first CUDA GPU's kind where CUDA is available, else ``cpu``) unless given;
``cpu`` stays out of the hash, so CPU ids are as they always were. A machine without a GPU
cannot know a GPU's kind: a spec naming ``cuda`` there must give ``device_kind`` (a sweep planned
on a login node for GPU nodes), else it is refused at once.

Where a run executes, :func:`run_device` picks the device of the spec's kind (``auto`` planned on
a CPU runs on the CPU, whatever the worker has) and refuses, in one line and before anything is
written, a device of another kind: its numbers would be stored under an id that promises others.
Checkpoints record the kind that computed them; one made on another kind is refused the same way.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from earlyprune.core.errors import SpecError, WrongDevice

if TYPE_CHECKING:
    import torch

    from earlyprune.run.spec import RunSpec

#: What a device kind looks like (``core.device_identity.device_kind``'s output).
KIND_PATTERN = re.compile(r"^(cpu|mps|cuda-sm[0-9]+-[a-z0-9]+(-[a-z0-9]+)*)$")
_CUDA = re.compile(r"^cuda(:[0-9]+)?$")
EXAMPLE_KIND = "cuda-sm90-nvidia-h100-80gb-hbm3"
#: How to plan GPU runs on a machine without a GPU (ends messages).
PLAN_ELSEWHERE = (
    f'give their device_kind (e.g. device_kind = "{EXAMPLE_KIND}" in the sweep file; '
    "`earlyprune list devices` on a GPU machine prints its kinds)"
)


def resolve_kind(spec: RunSpec) -> str:
    """``spec.device_kind`` if given (checked), else the kind of the device ``spec.device``
    names here; a CUDA device on a machine without CUDA is a ``SpecError``."""
    if spec.device_kind is not None:
        return _given(spec)
    if spec.device == "cpu" or not isinstance(spec.device, str):
        return "cpu"  # no torch import: a CPU spec is made without touching CUDA
    import torch

    from earlyprune.core.device_identity import device_kind

    cuda = torch.cuda.is_available()
    if spec.device == "auto" or not _CUDA.match(spec.device):  # others: refused by validate
        return device_kind("cuda:0") if cuda and spec.device == "auto" else "cpu"
    if not cuda:
        raise SpecError(
            f"device {spec.device!r} requested but CUDA is not available here; to plan GPU "
            f"runs on a machine without one, {PLAN_ELSEWHERE}"
        )
    index = int(spec.device.split(":")[1]) if ":" in spec.device else 0
    # A GPU index this machine does not have: planned as its first GPU's kind (refused where
    # it runs if the index is missing there too, or the kind differs).
    return device_kind(f"cuda:{index if index < torch.cuda.device_count() else 0}")


def _given(spec: RunSpec) -> str:
    kind = spec.device_kind
    if not isinstance(kind, str) or not KIND_PATTERN.match(kind):
        raise SpecError(
            f"device_kind must be 'cpu' or a GPU's kind such as {EXAMPLE_KIND!r}, got {kind!r}"
        )
    if spec.device == "cpu" and kind != "cpu":
        raise SpecError(
            f"device 'cpu' computes CPU numbers, but device_kind is {kind!r}: use device "
            "'auto' or 'cuda' for GPU runs, or leave device_kind out"
        )
    return kind


def hashed_kind(kind: str | None) -> str | None:
    """What the run id hashes for ``kind`` (None: left out, as for ``cpu``)."""
    if kind is None:
        return None
    from earlyprune.core.device_identity import identity_kind

    return identity_kind(kind)


def run_device(spec: RunSpec, name: str) -> torch.device:
    """The device ``spec`` computes on here (``name``: its ``device``, or torchrun's rank's);
    ``WrongDevice`` where this machine would compute another kind's numbers."""
    import torch

    from earlyprune.core.device_identity import device_kind

    if name == "auto" and spec.device_kind == "cpu":
        return torch.device("cpu")  # planned as a CPU run: it stays one on a GPU worker
    device = resolve_device(name)
    here = device_kind(device)
    if here != spec.device_kind:
        raise WrongDevice(
            f"this run's id is for {spec.device_kind} numbers, but here it would compute on "
            f"{here} ({device}); numbers differ between kinds of device: run it on a machine "
            "of its kind, or make its spec where it runs"
        )
    return device


def checked_kind(checkpoint: dict[str, Any] | None, spec: RunSpec, what: str) -> dict[str, Any]:
    """``checkpoint`` if it was made on ``spec``'s kind of device (or before kinds were
    recorded); a missing one is a ``RuntimeError``, another kind's a ``SpecError``."""
    if checkpoint is None:
        raise RuntimeError(f"{what} is missing")
    made_on = checkpoint.get("device_kind")
    if made_on is not None and made_on != spec.device_kind:
        raise SpecError(
            f"{what} was made on {made_on}, not on this run's {spec.device_kind}: numbers differ "
            "between kinds of device; resume it on a machine of its kind or use another --store"
        )
    return checkpoint


def resolve_device(name: str) -> torch.device:
    """The torch device ``name`` names here, or a ``SpecError`` where there is none."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SpecError(f"unknown device {name!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SpecError(f"device {name!r} requested but CUDA is not available here")
    # A missing GPU index would otherwise fail inside the run and be stored as "failed".
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise SpecError(
            f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) "
            "are visible"
        )
    return device
