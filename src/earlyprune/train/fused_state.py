"""A pack's state on disk: per-member checkpoints in the solo format, written atomically.

A pack checkpoint is one file holding, for every member, exactly what a solo run's
``latest.pt`` holds (``model`` state dict, ``optimizer`` state dict, ``step``, ``curve``), plus
the step at which each member diverged. Keeping the solo format means any member can be taken
out of its pack and continued alone; keeping one file (not one per member) means a pack killed
between two writes never resumes with its members at different steps.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

#: Written into every pack checkpoint; a file of another format is refused, never guessed at.
PACK_FORMAT = "earlyprune-fused-pack-1"
#: Optimizer state entries shared by all members (Adam's step count): never stacked.
_SHARED_STATE = frozenset({"step"})


def member_slice(stacked: Mapping[str, Tensor], k: int) -> dict[str, Tensor]:
    """Member ``k``'s tensors out of stacked (K, ...) tensors, as independent copies."""
    return {name: t[k].detach().clone() for name, t in stacked.items()}


def slice_optimizer_state(
    state_dict: dict[str, Any], shapes: Sequence[torch.Size], k: int
) -> dict[str, Any]:
    """Member ``k``'s part of a stacked optimizer's ``state_dict``, in the solo layout.

    Args:
        state_dict: ``optimizer.state_dict()`` of the optimizer over the stacked parameters.
        shapes: The stacked parameters' shapes, in the optimizer's parameter order.
        k: The member.
    """
    out: dict[int, dict[str, Any]] = {}
    for idx, entry in state_dict["state"].items():
        out[idx] = {key: _member_value(key, value, shapes[idx], k) for key, value in entry.items()}
    groups = [dict(g) for g in state_dict["param_groups"]]
    return {"state": out, "param_groups": groups}


def _member_value(key: str, value: Any, shape: torch.Size, k: int) -> Any:
    if isinstance(value, Tensor) and key not in _SHARED_STATE and value.shape == shape:
        return value[k].detach().clone()
    return value.clone() if isinstance(value, Tensor) else value


def stack_optimizer_states(
    states: Sequence[dict[str, Any]], shapes: Sequence[torch.Size]
) -> dict[str, Any]:
    """The inverse of :func:`slice_optimizer_state`: solo state dicts → one stacked state dict.

    Raises:
        ValueError: If the members' optimizer states do not cover the same parameters.
    """
    first = states[0]
    stacked: dict[int, dict[str, Any]] = {}
    for idx, entry in first["state"].items():
        if any(idx not in s["state"] for s in states):
            raise ValueError(f"optimizer state of parameter {idx} is missing for some members")
        solo_shape = shapes[idx][1:]
        stacked[idx] = {}
        for key, value in entry.items():
            if isinstance(value, Tensor) and key not in _SHARED_STATE and value.shape == solo_shape:
                stacked[idx][key] = torch.stack([s["state"][idx][key] for s in states])
            else:
                stacked[idx][key] = value
    return {"state": stacked, "param_groups": [dict(g) for g in first["param_groups"]]}


def save_atomic(path: Path, obj: Any) -> None:
    """``torch.save`` to a temporary file, fsync, then rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def load_pack_file(path: Path) -> dict[str, Any] | None:
    """A pack checkpoint, or None if there is none.

    Raises:
        ValueError: If the file is not a pack checkpoint of this format.
    """
    if not path.exists():
        return None
    found = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(found, dict) or found.get("format") != PACK_FORMAT:
        raise ValueError(f"{path} is not a fused pack checkpoint ({PACK_FORMAT})")
    return found
