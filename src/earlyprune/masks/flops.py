"""Theoretical forward multiply-adds (MACs) of a network, dense and under a mask.

What a reader of a pruning paper wants beside the weight count is the compute the pruned network
needs. The count here is the usual theoretical one (as in the SNIP/GraSP/SynFlow literature and
the "FLOPs" columns of pruning tables), measured by running one input of the dataset's shape
through the network with forward hooks:

- a convolution costs ``kept weights × output positions`` multiply-adds (each weight meets the
  input once per output pixel; groups and dilation change nothing in that product);
- a linear layer costs ``kept weights × positions`` where positions is 1 for the usual
  ``(batch, features)`` input (more for a sequence of vectors);
- only the prunable layers (``ep.prunable``: every Conv and Linear weight) are counted: biases,
  BatchNorm, activations and pooling are a small, mask-independent overhead and are left out;
- a module called several times in one forward pass is counted at every call.

Numbers are per example (batch 1), as integers.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

_KINDS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def count_flops(
    model: nn.Module,
    input_shape: Sequence[int],
    mask: Mapping[str, Tensor] | None = None,
) -> dict[str, Any]:
    """Forward multiply-adds of ``model`` on one example, dense and with ``mask`` applied.

    Args:
        model: The network. It is run once in eval mode on a zero input (so BatchNorm
            statistics are not touched) and put back in the mode it was in.
        input_shape: Shape of one example without the batch dimension, e.g. ``(3, 32, 32)``.
        mask: Kept weights (True = kept) by prunable parameter name; ``None`` = dense.

    Returns:
        ``{"dense": int, "pruned": int, "per_layer": {name: {"dense": int, "pruned": int}}}``,
        ``per_layer`` keyed by the weight's parameter name (as in ``layer_density``), in
        network order.

    Raises:
        ValueError: ``mask`` names a weight that is not a prunable weight of ``model``, or a
            mask's shape differs from its weight's.
    """
    names = _weight_names(model)
    mask = dict(mask or {})
    unknown = [n for n in mask if n not in names.values()]
    if unknown:
        raise ValueError(f"mask names {', '.join(unknown)}, not prunable weights of the model")
    positions = dict.fromkeys(names.values(), 0)

    def hook(module: nn.Module, _inputs: Any, output: Tensor) -> None:
        channels = module.out_channels if hasattr(module, "out_channels") else module.out_features
        # Output positions per example: every output element except the batch and channel axes.
        positions[names[id(module)]] += output.numel() // (output.shape[0] * channels)

    modules = [m for m in model.modules() if id(m) in names]
    handles = [m.register_forward_hook(hook) for m in modules]
    weights = {names[id(m)]: m.weight for m in modules}
    training = model.training
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None else torch.float32
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *input_shape), device=device, dtype=dtype))
    finally:
        model.train(training)
        for handle in handles:
            handle.remove()
    per_layer: dict[str, dict[str, int]] = {}
    for name, weight in weights.items():
        kept = weight.numel()
        if name in mask:
            if tuple(mask[name].shape) != tuple(weight.shape):
                raise ValueError(
                    f"mask[{name!r}] has shape {tuple(mask[name].shape)}, "
                    f"the weight {tuple(weight.shape)}"
                )
            kept = int(mask[name].bool().sum())
        per_layer[name] = {
            "dense": weight.numel() * positions[name],
            "pruned": kept * positions[name],
        }
    return {
        "dense": sum(v["dense"] for v in per_layer.values()),
        "pruned": sum(v["pruned"] for v in per_layer.values()),
        "per_layer": per_layer,
    }


def _weight_names(model: nn.Module) -> dict[int, str]:
    """``id(module)`` → its weight's parameter name, for every prunable Conv/Linear module."""
    out: dict[int, str] = {}
    by_weight: dict[int, str] = {}
    for mod_name, module in model.named_modules(remove_duplicate=False):
        if isinstance(module, _KINDS) and isinstance(module.weight, nn.Parameter):
            # A weight shared by two modules is one prunable tensor (as in ``ep.prunable``):
            # both modules' work is counted under its first name.
            name = by_weight.setdefault(
                id(module.weight), f"{mod_name}.weight" if mod_name else "weight"
            )
            out.setdefault(id(module), name)
    return out


def flops_record(
    model: nn.Module, input_shape: Sequence[int], mask: Mapping[str, Tensor] | None
) -> dict[str, Any] | None:
    """:func:`count_flops` for ``result.json``: None (shown as "—") if the count itself fails.

    A trained run must never be lost to its auxiliary compute count (a user network that needs
    inputs other than one example of the dataset's shape, say); the failure is warned about.
    """
    try:
        return count_flops(model, input_shape, mask)
    except Exception as exc:  # noqa: BLE001 - the run's own numbers are already computed
        warnings.warn(
            f"FLOPs not counted: {type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=2
        )
        return None
