"""What a mask is over: the prunable weights, the ``Mask`` and ``Scores`` types, and their checks.

A ``Mask`` is ``dict[str, BoolTensor]`` over prunable parameter names (True = kept); ``Scores``
has the same keys, higher = keep. Selecting a mask from scores is :mod:`earlyprune.masks.mask`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

Scores = dict[str, Tensor]
Mask = dict[str, Tensor]


def prunable(model: nn.Module) -> dict[str, nn.Parameter]:
    """The weights a pruning method may remove: every Conv and Linear weight.

    The output layer and 1×1 shortcut convolutions are included; biases and normalization
    parameters never are. Order follows ``model.named_modules()`` (network order).

    Args:
        model: Any ``nn.Module``.

    Returns:
        Parameter name (as in ``model.named_parameters()``) → parameter.
    """
    kinds = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
    out: dict[str, nn.Parameter] = {}
    seen: set[int] = set()
    for mod_name, module in model.named_modules():
        if isinstance(module, kinds) and isinstance(module.weight, nn.Parameter):
            if id(module.weight) in seen:  # a shared (tied) weight counts once
                continue
            seen.add(id(module.weight))
            out[f"{mod_name}.weight" if mod_name else "weight"] = module.weight
    return out


def check_sparsity(sparsity: float) -> float:
    """Validates a sparsity (fraction removed) and returns it as a float in [0, 1)."""
    if isinstance(sparsity, bool) or not isinstance(sparsity, int | float):
        raise ValueError(f"sparsity must be a number in [0, 1), got {sparsity!r}")
    if not (0.0 <= float(sparsity) < 1.0) or math.isnan(sparsity):
        raise ValueError(
            f"sparsity must be in [0, 1) (fraction of weights removed), got {sparsity!r}"
        )
    return float(sparsity)


#: How a non-bool mask is refused (also in the README's Troubleshooting table).
NOT_BOOL = "masks are bool tensors (True = keep, False = prune)"


def check_mask(model: nn.Module, mask: Mapping[str, Tensor]) -> Mask:
    """Checks that ``mask`` has exactly the model's prunable names and shapes, as bool tensors.

    A float or integer "mask" is refused rather than cast: ``0.3`` would silently mean "keep".

    Raises:
        ValueError: naming the missing, unexpected, mis-shaped or non-bool entries.
    """
    params = prunable(model)
    missing = [n for n in params if n not in mask]
    extra = [n for n in mask if n not in params]
    if missing or extra:
        raise ValueError(
            f"mask does not match the model's prunable weights: missing {missing[:5]}, "
            f"unexpected {extra[:5]}; expected keys: {list(params)[:8]}"
        )
    out: Mask = {}
    for name, p in params.items():
        m = mask[name]
        if not isinstance(m, Tensor) or tuple(m.shape) != tuple(p.shape):
            got = tuple(m.shape) if isinstance(m, Tensor) else type(m).__name__
            raise ValueError(f"mask[{name!r}] has shape {got}, expected {tuple(p.shape)}")
        if m.dtype != torch.bool:
            raise ValueError(
                f"mask[{name!r}] is {str(m.dtype).replace('torch.', '')}, not bool: {NOT_BOOL}; "
                "build it with a comparison (scores > t), or .bool() only if it holds 0 and 1"
            )
        out[name] = m.to(device=p.device)
    return out


def full_mask(model: nn.Module) -> Mask:
    """A mask that keeps every prunable weight."""
    return {n: torch.ones_like(p, dtype=torch.bool) for n, p in prunable(model).items()}


def apply_mask(model: nn.Module, mask: Mapping[str, Tensor]) -> None:
    """Zeroes the pruned weights of ``model`` in place (parameter names and keys unchanged)."""
    checked = check_mask(model, mask)
    params = prunable(model)
    with torch.no_grad():
        for name, m in checked.items():
            params[name].mul_(m.to(params[name].dtype))
