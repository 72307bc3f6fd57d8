"""The kind of device in a run's identity: resolved when the spec is made, checked on resume.

A ``RunSpec``'s ``device_kind`` is resolved from its ``device`` on the machine that makes the
spec (``auto``: the first CUDA GPU's kind where CUDA is available, else ``cpu``); ``cpu`` stays
out of the hash, so CPU ids are as they always were. Checkpoints record the kind that computed
them; one made on another kind is refused in one line (its numbers are not this run's).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from earlyprune.core.errors import SpecError

if TYPE_CHECKING:
    import torch

    from earlyprune.run.spec import RunSpec


def resolve_kind(spec: RunSpec) -> str:
    """``spec.device_kind`` if given, else the kind of the device ``spec.device`` names here.

    A CUDA device on a machine without CUDA resolves to ``cpu``: such a spec is refused when it
    runs (``stages.resolve_device``), and ``sweep plan``/``status`` on a CPU machine see CPU ids.
    """
    if spec.device_kind is not None:
        return spec.device_kind
    if spec.device == "cpu":
        return "cpu"  # no torch import: a CPU spec is made without touching CUDA
    import torch

    from earlyprune.core.device_identity import device_kind

    if not torch.cuda.is_available():
        return "cpu"
    index = 0 if spec.device in ("auto", "cuda") else int(spec.device.split(":")[1])
    if index >= torch.cuda.device_count():
        return "cpu"  # refused when it runs: no such GPU
    return device_kind(f"cuda:{index}")


def hashed_kind(kind: str | None) -> str | None:
    """What the run id hashes for ``kind`` (None: left out, as for ``cpu``)."""
    if kind is None:
        return None
    from earlyprune.core.device_identity import identity_kind

    return identity_kind(kind)


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
