"""Channel structure: which output channels are tied, and selecting whole channels.

Tracing follows Torch-Pruning's idea of a dependency graph, written here with ``torch.fx``:
every tensor in the traced forward carries the layer whose output channels it indexes; an
addition of two tensors ties their layers (a residual sum can only lose a channel if every
addend loses it), BatchNorm and element-wise or pooling ops pass channels through, and a
Conv/Linear starts fresh channels. A tensor tied to the network's input or reaching its output
is fixed: the output layer keeps all its units. Concatenation, grouped convs and unknown
modules are refused with one line, rather than shrunk wrongly.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor, fx, nn
from torch.nn import functional as F

from earlyprune.masks.mask import prunable

INPUT, OUTPUT = "<input>", "<output>"
#: Modules and functions through which a tensor keeps its channel indexing.
_PASS_MODULES = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.GELU,
    nn.SiLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.Identity,
    nn.Dropout,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.Flatten,
)
_PASS_FUNCS = {
    F.relu,
    torch.relu,
    F.gelu,
    F.silu,
    torch.tanh,
    torch.sigmoid,
    F.dropout,
    torch.flatten,
    F.max_pool2d,
    F.avg_pool2d,
    F.adaptive_avg_pool2d,
    F.adaptive_max_pool2d,
}
_PASS_METHODS = {"relu", "flatten", "view", "reshape", "contiguous", "sigmoid", "tanh"}
_ADDS = {operator.add, operator.iadd, torch.add}
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


@dataclass
class ChannelGraph:
    """Which prunable layers' output channels are tied, and who consumes them.

    Attributes:
        groups: Tied layers (weight names), one tuple per group, network order.
        fixed: Indices of groups that keep every channel (tied to the input or the output).
        group_of: Weight name → index of the group of its output channels.
        inputs: Weight name → (group index, columns per channel) of its input channels;
            absent when it reads the network's input. Columns per channel is 1 except for a
            Linear after a flatten (H·W columns per channel).
        norms: BatchNorm module name → index of the group it normalizes.
    """

    groups: list[tuple[str, ...]]
    fixed: set[int]
    group_of: dict[str, int]
    inputs: dict[str, tuple[int, int]] = field(default_factory=dict)
    norms: dict[str, int] = field(default_factory=dict)


class _Union:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, a: str) -> str:
        self.parent.setdefault(a, a)
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def join(self, a: str, b: str) -> None:
        self.parent[self.find(a)] = self.find(b)


def _source(env: dict[fx.Node, str | None], arg: object) -> str | None:
    return env.get(arg) if isinstance(arg, fx.Node) else None


def _walk(model: nn.Module, weights: dict[str, str]) -> tuple[_Union, dict, dict]:
    """Traces ``model``; returns the ties, each layer's input source and each norm's source."""
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception as err:  # fx raises many types; the user needs one line either way
        raise ValueError(f"structure channel needs an fx-traceable model: {err}") from err
    ties, env = _Union(), {}
    reads: dict[str, str] = {}
    norms: dict[str, str] = {}
    for node in graph.nodes:
        first = _source(env, node.args[0]) if node.args else None
        if node.op == "placeholder":
            env[node] = INPUT
        elif node.op == "call_module":
            mod = model.get_submodule(node.target)
            if isinstance(mod, _LAYERS):
                if getattr(mod, "groups", 1) != 1:
                    raise ValueError(
                        f"structure channel does not support grouped conv {node.target!r}"
                    )
                name = weights[node.target]
                reads[name] = first or INPUT
                env[node] = name
            elif isinstance(mod, _NORMS):
                norms[node.target] = first or INPUT
                env[node] = first
            elif isinstance(mod, _PASS_MODULES):
                env[node] = first
            else:
                raise ValueError(
                    f"structure channel cannot trace through {type(mod).__name__} ({node.target})"
                )
        elif node.op == "call_function" and node.target in _ADDS:
            srcs = [_source(env, a) for a in node.args if isinstance(a, fx.Node)]
            for s in srcs[1:]:
                ties.join(s or INPUT, srcs[0] or INPUT)
            env[node] = srcs[0] if srcs else None
        elif node.op == "call_function" and node.target is torch.cat:
            raise ValueError("structure channel does not support concatenation (torch.cat)")
        elif (node.op == "call_function" and node.target in _PASS_FUNCS) or (
            node.op == "call_method" and node.target in _PASS_METHODS
        ):
            env[node] = first
        elif node.op == "call_method" and node.target == "mean" and _spatial(node):
            env[node] = first  # global average pooling: x.mean((2, 3)) keeps the channels
        elif node.op == "output":
            ties.join(first or INPUT, OUTPUT)
        else:
            env[node] = None  # sizes, attributes: no channels
    return ties, reads, norms


def _spatial(node: fx.Node) -> bool:
    """Whether a ``mean`` node reduces only dimensions after the channels (2, 3, ...)."""
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    dims = (dims,) if isinstance(dims, int) else dims
    return (
        isinstance(dims, tuple | list)
        and bool(dims)
        and all(isinstance(d, int) and d >= 2 for d in dims)
    )


def trace_channels(model: nn.Module) -> ChannelGraph:
    """The :class:`ChannelGraph` of ``model`` (fx-traceable, ungrouped convs, no concat)."""
    params = prunable(model)
    weights = {name.rpartition(".")[0]: name for name in params}  # module name → weight
    ties, reads, norms = _walk(model, weights)
    roots: dict[str, int] = {}
    groups: list[list[str]] = []
    for name in params:
        root = ties.find(name)
        if root not in roots:
            roots[root] = len(groups)
            groups.append([])
        groups[roots[root]].append(name)
    fixed = {g for r, g in roots.items() if r in (ties.find(INPUT), ties.find(OUTPUT))}
    group_of = {n: roots[ties.find(n)] for n in params}
    graph = ChannelGraph([tuple(g) for g in groups], fixed, group_of)
    for name, src in reads.items():
        root = ties.find(src)
        if root == ties.find(INPUT):
            continue
        group = roots[root]
        channels = params[groups[group][0]].shape[0]
        columns = params[name].shape[1]
        if columns % channels:
            raise ValueError(f"{name!r} reads {columns} columns from {channels} channels")
        graph.inputs[name] = (group, columns // channels)
    graph.norms = {m: roots[ties.find(s)] for m, s in norms.items() if ties.find(s) in roots}
    return graph


def drop_lowest(values: Tensor, n_drop: int) -> Tensor:
    """Bool keep-mask along the last dim without the ``n_drop`` lowest values of each row.

    A stable ascending sort puts, among equal values, the earlier index first, so it is the
    one dropped: the package's tie rule.
    """
    keep = torch.ones_like(values, dtype=torch.bool)
    if n_drop > 0:
        order = torch.sort(values, dim=-1, stable=True).indices[..., :n_drop]
        keep.scatter_(-1, order, False)
    return keep


def kept_channels(graph: ChannelGraph, mask: Mapping[str, Tensor]) -> dict[int, Tensor]:
    """Per group, which channels survive: those with a kept weight in any tied layer's row."""
    out: dict[int, Tensor] = {}
    for g, names in enumerate(graph.groups):
        rows = [mask[n].reshape(mask[n].shape[0], -1).any(1).cpu() for n in names]
        out[g] = torch.stack(rows).any(0)
    return out


def silence_channels(model: nn.Module, mask: Mapping[str, Tensor]) -> None:
    """Zeroes, in place, the bias and the BatchNorm scale and shift of every pruned channel.

    A channel whose weights are all pruned still outputs its bias and BatchNorm shift (a
    constant that padding makes position-dependent downstream), so a channel-masked network is
    only equal to its shrunk version once those are zero too. Training under channel structure
    must keep them zero, as ``keep_pruned`` keeps pruned weights zero (:func:`channel_silencer`).
    """
    channel_silencer(model, mask)()


def channel_silencer(model: nn.Module, mask: Mapping[str, Tensor]) -> Callable[..., None]:
    """A callable that zeroes the pruned channels' biases and BatchNorm affine parameters.

    The channels are traced once, here; each call (it takes and ignores a training callback's
    arguments, so it can run after every optimizer step) only writes zeros.
    """
    graph = trace_channels(model)
    keep = kept_channels(graph, mask)
    modules = dict(model.named_modules())
    targets = []  # (parameter, indices of its pruned channels)
    for name in graph.group_of:
        bias = getattr(modules[name.rpartition(".")[0]], "bias", None)
        if bias is not None:
            targets.append((bias, ~keep[graph.group_of[name]].to(bias.device)))
    for mod_name, g in graph.norms.items():
        bn = modules[mod_name]
        if bn.affine:
            targets += [(p, ~keep[g].to(p.device)) for p in (bn.weight, bn.bias)]

    def silence(*_: object) -> None:
        with torch.no_grad():
            for param, pruned in targets:
                param[pruned] = 0

    return silence
