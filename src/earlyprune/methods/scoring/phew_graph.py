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

from earlyprune.masks.mask import prunable
from earlyprune.models.init import NORM_LAYERS

__registers__ = ()  # helper: PHEW's unit graph, used by phew.py

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


class _Holder(nn.Module):
    """Holds the probed copy, so that even a model that is itself one layer can be replaced."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.m = net

    def forward(self, x: Tensor) -> Tensor:
        return self.m(x)


class _Stub(nn.Module):
    """Stands in for a prunable layer: records which input units carry a signal and outputs
    zeros (or the injected units), without computing the layer (so a probe pass is cheap)."""

    def __init__(self, name: str, layer: nn.Module, out_shape: tuple[int, ...], probe: _Probe):
        super().__init__()
        self.name, self.dim, self.out_shape, self.probe = name, unit_dim(layer), out_shape, probe

    def forward(self, x: Tensor, *args: object) -> Tensor:
        if self.name not in self.probe.order:
            self.probe.order.append(self.name)
        d = self.dim % x.dim()
        other = [i for i in range(1, x.dim()) if i != d]
        self.probe.seen[self.name] = (x.abs().sum(dim=other) if other else x.abs()) > 0
        out = self.probe.inject.get(self.name)
        if out is None:
            out = x.new_zeros((x.shape[0], *self.out_shape))
        return out


class _Probe:
    def __init__(self) -> None:
        self.order: list[str] = []
        self.seen: dict[str, Tensor] = {}  # layer → (rows × input units) signal present
        self.inject: dict[str, Tensor] = {}


def probe_wiring(model: nn.Module, input_shape: tuple[int, ...]) -> Wiring:
    """Probes the unit graph of ``model`` for inputs of shape ``(C, ...)`` (no batch dimension).

    Cost: one float64 pass at batch 1 through the network, then one pass per chunk of at most
    64 units of the network input and of every layer's outputs, in which the prunable layers
    are replaced by stubs (only BatchNorm, activations, pooling, additions... are computed).
    """
    holder = _Holder(_neutral_copy(model))
    by_name = {n: holder.get_submodule(_path(n)) for n in prunable(model)}
    device = next(iter(prunable(holder).values())).device
    out_shape, out = _output_shapes(holder, by_name, input_shape, device)
    if not isinstance(out, Tensor):
        raise ValueError("phew needs a model whose output is one tensor")
    n_output = int(out.reshape(1, -1).shape[1])
    probe = _Probe()
    for name, layer in by_name.items():
        if name not in out_shape:
            continue  # never called in a forward pass: never walked
        parent_name, _, attr = _path(name).rpartition(".")
        setattr(holder.get_submodule(parent_name), attr, _Stub(name, layer, out_shape[name], probe))
    with torch.no_grad():
        holder(torch.zeros((1, *input_shape), dtype=torch.float64, device=device))
        order = list(probe.order)
        n_in = {n: int(probe.seen[n].shape[1]) for n in order}
        n_out = {n: int(by_name[n].weight.shape[0]) for n in order}
        sources = ["input", *order]
        units = {"input": input_shape[0], **n_out}

        def run(inject: dict[str, Tensor], rows: int) -> tuple[dict[str, Tensor], Tensor]:
            """One probing pass: ``inject[src]`` is rows × units of src; returns what arrived."""
            x = torch.zeros((rows, *input_shape), dtype=torch.float64, device=device)
            if "input" in inject:
                x += _spread(inject["input"], (rows, *input_shape), 1)
            for src, v in inject.items():
                if src != "input":
                    probe.inject[src] = _spread(v, (rows, *out_shape[src]), unit_dim(by_name[src]))
            probe.seen.clear()
            reached = holder(x).reshape(rows, -1) != 0
            probe.inject.clear()
            return dict(probe.seen), reached

        # Which layers each source feeds at all: one pass, row i lights every unit of source i.
        lit = {
            src: torch.zeros((len(sources), units[src]), dtype=torch.float64, device=device)
            for src in sources
        }
        for i, src in enumerate(sources):
            lit[src][i] = 1.0
        seen, reached = run(lit, len(sources))
        feeds = {
            src: {d for d in order if d != src and bool(seen[d][i].any())}
            | ({"output"} if bool(reached[i].any()) else set())
            for i, src in enumerate(sources)
        }
        # Sources feeding disjoint sets of layers share probing passes (a chain: all of them),
        # so a destination always knows which source its signal came from.
        groups = _disjoint_groups(sources, feeds, units)
        blocks: dict[str, dict[str, list[np.ndarray]]] = {src: {} for src in sources}
        for g in groups:
            for start in range(0, max(units[n] for n in g), _CHUNK):
                rows = min(_CHUNK, max(units[n] for n in g) - start)
                inject = {}
                for src in g:
                    onehot = torch.zeros((rows, units[src]), dtype=torch.float64, device=device)
                    r = torch.arange(max(0, min(rows, units[src] - start)))
                    onehot[r, start + r] = 1.0
                    inject[src] = onehot
                x_seen, x_reached = run(inject, rows)
                for src in g:
                    n_rows = max(0, min(rows, units[src] - start))
                    for dst in [d for d in [*order, "output"] if d in feeds[src]]:  # fixed order
                        got = x_reached if dst == "output" else x_seen[dst]
                        blocks[src].setdefault(dst, []).append(got[:n_rows].cpu().numpy())
        edges: dict[str, dict[str, np.ndarray]] = {}
        for src in sources:
            joined = {d: np.concatenate(b) for d, b in blocks[src].items()}
            edges[src] = {d: e for d, e in joined.items() if e.any()}
    return Wiring(order, n_in, n_out, input_shape[0], n_output, edges)


def _spread(onehot: Tensor, shape: tuple[int, ...], d: int) -> Tensor:
    """``onehot`` (rows × units) broadcast to ``shape``, units along dimension ``d``."""
    size = [1] * len(shape)
    size[0] = onehot.shape[0]
    size[d % len(shape)] = onehot.shape[1]
    return onehot.reshape(size).expand(shape).clone()


def _path(weight: str) -> str:
    """The module holding prunable ``weight`` inside the holder (the model is its ``m``)."""
    return "m." + weight[: -len(".weight")] if weight != "weight" else "m"


def _output_shapes(
    holder: nn.Module,
    by_name: dict[str, nn.Module],
    input_shape: tuple[int, ...],
    device: torch.device,
) -> tuple[dict[str, tuple[int, ...]], object]:
    """Each prunable layer's output shape (no batch dimension) and the network's output, at batch 1."""
    out_shape: dict[str, tuple[int, ...]] = {}

    def shape_hook(name: str):
        def hook(module: nn.Module, args: tuple, out: Tensor) -> None:
            out_shape.setdefault(name, tuple(out.shape[1:]))

        return hook

    handles = [m.register_forward_hook(shape_hook(n)) for n, m in by_name.items()]
    try:
        with torch.no_grad():
            out = holder(torch.zeros((1, *input_shape), dtype=torch.float64, device=device))
    finally:
        for h in handles:
            h.remove()
    return out_shape, out


def _disjoint_groups(
    sources: list[str], feeds: dict[str, set[str]], units: dict[str, int]
) -> list[list[str]]:
    """Sources grouped so that no two in a group feed the same layer (largest first, greedy)."""
    groups: list[list[str]] = []
    for src in sorted(sources, key=lambda n: -units[n]):
        for g in groups:
            if all(not (feeds[src] & feeds[o]) for o in g):
                g.append(src)
                break
        else:
            groups.append([src])
    return groups
