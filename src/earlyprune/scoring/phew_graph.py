"""The unit graph PHEW walks on, found by probing any ``nn.Module`` (no architecture is assumed).

A *unit* is a channel (Conv) or a feature (Linear) at the input or output of a prunable layer,
a channel of the network input (dim 1 of its inputs) or an output of the network. Layer k's
weights connect its input units to its output units; the *wiring* says which output units of
one layer (or of the network input) feed which input units of another, through everything that
is not a prunable layer (BatchNorm, activations, pooling, residual additions, concatenation,
flattening).

The wiring is probed on a float64 eval-mode copy in which every prunable weight and every bias is
zero, BatchNorm is the identity (γ = 1, β = 0, mean 0, variance 1) and the input is zero: then a
unit carries a signal only where one is injected. Injecting ones into output unit a of layer j
(one batch row per unit) and reading which input units of every other layer, and which network
outputs, become non-zero gives exactly the edges that do not pass through another prunable
layer. Parameters of other kinds of modules are zeroed too, so a module that is not
zero-in-zero-out (e.g. LayerNorm with a bias) can add spurious edges: the walks then treat it as
a connection.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from earlyprune.masking import prunable
from earlyprune.models.init import NORM_LAYERS

#: Source units injected per probing pass (bounds the probe's memory on wide layers).
_CHUNK = 64


def unit_dim(module: nn.Module) -> int:
    """The dimension of a layer's inputs and outputs that indexes its units."""
    return -1 if isinstance(module, nn.Linear) else 1


@dataclass
class Wiring:
    """Edges of the unit graph.

    Attributes:
        layers: Prunable weight names in execution order.
        n_in: Input units of each layer; ``n_out``: output units.
        n_input: Channels of the network input; ``n_output``: network outputs.
        edges: ``edges[src][dst]`` is a bool array (units of src × input units of dst) where
            ``src`` is ``"input"`` or a layer name and ``dst`` a layer name or ``"output"``.
    """

    layers: list[str]
    n_in: dict[str, int]
    n_out: dict[str, int]
    n_input: int
    n_output: int
    edges: dict[str, dict[str, np.ndarray]]


def _neutral_copy(model: nn.Module) -> nn.Module:
    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for module in net.modules():
            for p in module.parameters(recurse=False):
                p.zero_()
                p.requires_grad_(False)
            if isinstance(module, NORM_LAYERS):
                if module.weight is not None:
                    module.weight.fill_(1.0)
                if module.running_mean is not None:
                    module.running_mean.zero_()
                    module.running_var.fill_(1.0)
    return net


def probe_wiring(model: nn.Module, input_shape: tuple[int, ...]) -> Wiring:
    """Probes the unit graph of ``model`` for inputs of shape ``(C, ...)`` (no batch dimension).

    Cost: one forward pass per chunk of at most 64 units of the network input and of every
    layer's outputs, in float64 with the batch dimension as the chunk.
    """
    net = _neutral_copy(model)
    names = set(prunable(model))
    by_name = {
        f"{n}.weight" if n else "weight": m
        for n, m in net.named_modules()
        if (f"{n}.weight" if n else "weight") in names
    }
    device = next(iter(prunable(net).values())).device
    order: list[str] = []
    seen_in: dict[str, Tensor] = {}
    out_shape: dict[str, tuple[int, ...]] = {}
    inject: dict[str, Tensor] = {}

    def pre_hook(name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            if name not in order:
                order.append(name)
            x = args[0]
            d = unit_dim(module) % x.dim()
            other = [i for i in range(1, x.dim()) if i != d]
            seen_in[name] = (x.abs().sum(dim=other) if other else x.abs()) > 0  # rows × units

        return hook

    def post_hook(name: str):
        def hook(module: nn.Module, args: tuple, out: Tensor) -> Tensor | None:
            out_shape.setdefault(name, tuple(out.shape[1:]))
            return inject[name] if name in inject else None

        return hook

    handles = []
    for name, module in by_name.items():
        handles.append(module.register_forward_pre_hook(pre_hook(name)))
        handles.append(module.register_forward_hook(post_hook(name)))
    try:
        with torch.no_grad():
            out = net(torch.zeros((1, *input_shape), dtype=torch.float64, device=device))
            if not isinstance(out, Tensor):
                raise ValueError("phew needs a model whose output is one tensor")
            n_in = {n: int(seen_in[n].shape[1]) for n in order}
            n_out = {n: int(by_name[n].weight.shape[0]) for n in order}
            edges: dict[str, dict[str, np.ndarray]] = {}
            for src in ["input", *order]:
                units = input_shape[0] if src == "input" else n_out[src]
                blocks: dict[str, list[np.ndarray]] = {}
                for start in range(0, units, _CHUNK):
                    rows = min(_CHUNK, units - start)
                    onehot = torch.zeros((rows, units), dtype=torch.float64, device=device)
                    onehot[torch.arange(rows), torch.arange(start, start + rows)] = 1.0
                    x = torch.zeros((rows, *input_shape), dtype=torch.float64, device=device)
                    if src == "input":
                        x += _spread(onehot, (rows, *input_shape), 1)
                    else:
                        inject[src] = _spread(
                            onehot, (rows, *out_shape[src]), unit_dim(by_name[src])
                        )
                    seen_in.clear()
                    out = net(x)
                    inject.clear()
                    for dst in order:
                        if dst in seen_in and dst != src:
                            blocks.setdefault(dst, []).append(seen_in[dst].cpu().numpy())
                    reached = (out.reshape(rows, -1) != 0).cpu().numpy()
                    blocks.setdefault("output", []).append(reached)
                joined = {d: np.concatenate(b) for d, b in blocks.items()}
                edges[src] = {d: e for d, e in joined.items() if e.any()}
    finally:
        for h in handles:
            h.remove()
    return Wiring(
        order, n_in, n_out, input_shape[0], int(out.reshape(out.shape[0], -1).shape[1]), edges
    )


def _spread(onehot: Tensor, shape: tuple[int, ...], d: int) -> Tensor:
    """``onehot`` (rows × units) broadcast to ``shape``, units along dimension ``d``."""
    size = [1] * len(shape)
    size[0] = onehot.shape[0]
    size[d % len(shape)] = onehot.shape[1]
    return onehot.reshape(size).expand(shape).clone()
