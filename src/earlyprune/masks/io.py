"""A mask on disk and in ``torch.nn.utils.prune``: ``ep.save_mask``, ``ep.load_mask``, ``ep.to_torch_prune``.

Masks are stored as a plain dict of bool tensors read back with ``weights_only=True``, so loading
one never executes code and a checkpoint of float weights is refused rather than misread.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from earlyprune.masks.mask import Mask, check_mask


def save_mask(mask: Mapping[str, Tensor], path: str | os.PathLike[str]) -> None:
    """Writes a mask atomically (temp file + rename) as a torch file of bool tensors."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save({n: m.detach().to("cpu", torch.bool) for n, m in mask.items()}, tmp)
    os.replace(tmp, path)


def load_mask(path: str | os.PathLike[str]) -> Mask:
    """Reads a mask written by :func:`save_mask` (``weights_only=True``: no code is executed).

    Raises:
        ValueError: One short line if the file is missing, unreadable, or holds anything but a
            dict of name → bool tensor (a checkpoint or state_dict of float weights included).
    """
    not_a_mask = f"{path} does not hold a mask (dict of name → bool tensor)"
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickles before refusing them
            warnings.simplefilter("ignore")
            data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"mask file not found: {path}") from None
    except Exception as exc:  # pickle errors, truncation, refused globals: torch's text is long
        raise ValueError(
            f"{not_a_mask}: it is not a file written by ep.save_mask ({exc.__class__.__name__})"
        ) from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in data.items()
    ):
        raise ValueError(f"{not_a_mask}: found {type(data).__name__}")
    wrong = [k for k, v in data.items() if v.dtype != torch.bool]
    if wrong:  # float weights (a state_dict) are not "keep" flags
        kind = str(data[wrong[0]].dtype).replace("torch.", "")
        raise ValueError(f"{not_a_mask}: {wrong[0]!r} is {kind} (a checkpoint or state_dict?)")
    return dict(data)


def to_torch_prune(model: nn.Module, mask: Mapping[str, Tensor]) -> None:
    """Hands ``mask`` to ``torch.nn.utils.prune`` (``custom_from_mask``) on every prunable weight.

    Afterwards the model follows torch's pruning API (``weight_orig`` + ``weight_mask``);
    ``torch.nn.utils.prune.remove`` makes it permanent.
    """
    from torch.nn.utils import prune as torch_prune

    checked = check_mask(model, mask)
    modules = dict(model.named_modules())
    for name, m in checked.items():
        module_name, _, attr = name.rpartition(".")
        torch_prune.custom_from_mask(modules[module_name], attr, m)
