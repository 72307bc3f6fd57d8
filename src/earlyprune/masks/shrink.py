"""A physically smaller network from a channel mask: the real speed of channel pruning.

Every Conv/Linear loses the rows of its pruned output channels and the columns of the pruned
channels it reads; every BatchNorm loses the same channels as the layers it normalizes. Its
outputs equal the masked network's once pruned channels are silenced
(:func:`earlyprune.masks.channels.silence_channels`), up to float summation order.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from earlyprune.masks.channels import ChannelGraph, kept_channels, trace_channels
from earlyprune.masks.mask import check_mask, prunable


def _slice_param(module: nn.Module, attr: str, index: Tensor, dim: int) -> None:
    p = getattr(module, attr)
    if p is None:
        return
    data = p.detach().index_select(dim, index.to(p.device)).clone()
    if isinstance(p, nn.Parameter):
        setattr(module, attr, nn.Parameter(data, requires_grad=p.requires_grad))
    else:
        setattr(module, attr, data)  # a buffer (running statistics)


def _columns(keep: Tensor, per: int) -> Tensor:
    return torch.nonzero(keep.repeat_interleave(per)).flatten()


def _shrink_layer(module: nn.Module, rows: Tensor, cols: Tensor | None) -> None:
    _slice_param(module, "weight", rows, 0)
    _slice_param(module, "bias", rows, 0)
    if cols is not None:
        _slice_param(module, "weight", cols, 1)
    out, inp = module.weight.shape[:2]
    if isinstance(module, nn.Linear):
        module.out_features, module.in_features = out, inp
    else:
        module.out_channels, module.in_channels = out, inp


def _shrink_norm(bn: nn.Module, index: Tensor) -> None:
    for attr in ("weight", "bias", "running_mean", "running_var"):
        _slice_param(bn, attr, index, 0)
    bn.num_features = len(index)


def shrink(
    model: nn.Module, mask: Mapping[str, Tensor], graph: ChannelGraph | None = None
) -> nn.Module:
    """A copy of ``model`` without the channels ``mask`` prunes entirely.

    Args:
        model: The network (left unchanged).
        mask: A mask over its prunable weights; a channel survives if any weight of its row
            (in any tied layer) is kept. Pruned weights inside kept rows are zeroed in the copy.
        graph: ``trace_channels(model)``, if already computed.

    Returns:
        The smaller network, on the model's device, same class and module names.
    """
    checked = check_mask(model, mask)
    graph = graph or trace_channels(model)
    keep = kept_channels(graph, checked)
    small = copy.deepcopy(model)
    params = prunable(small)
    with torch.no_grad():
        for name, m in checked.items():
            params[name].mul_(m.to(params[name].dtype))
    modules = dict(small.named_modules())
    for name in params:
        rows = torch.nonzero(keep[graph.group_of[name]]).flatten()
        cols = None
        if name in graph.inputs:
            group, per = graph.inputs[name]
            cols = _columns(keep[group], per)
        _shrink_layer(modules[name.rpartition(".")[0]], rows, cols)
    for mod_name, g in graph.norms.items():
        _shrink_norm(modules[mod_name], torch.nonzero(keep[g]).flatten())
    return small
