"""Which kept weights still matter: effective masks and degenerate-mask checks.

A kept weight is *effective* when it lies on at least one path from the input to the output
(Vysogorets & Kempe, 2021, "Connectivity matters"): a weight into a unit that no input reaches,
or out of a unit that reaches no output, changes nothing the network computes (beyond constant
bias terms). The *effective density* counts only those.

How it is computed, on any ``nn.Module``: a float64, eval-mode copy of the network whose
prunable weights are the mask (scaled per layer by 1/√fan_in so that deep networks neither
overflow nor underflow), whose Conv/Linear biases and BatchNorm β are 0, whose BatchNorm is the
identity (γ = 1, running mean 0, variance 1) and whose max-pooling is average pooling, is fed an
all-ones input. Every activation is then ≥ 0 and > 0 exactly where some input path arrives, and
the gradient of the summed output with respect to a kept weight is > 0 exactly when the weight's
input unit is reached and its output unit reaches the output. Max-pooling is swapped because it
routes the gradient to one input only, which would hide the other paths. The rule assumes
ReLU-like activations (f(0) = 0, increasing for positive inputs) and no normalization that
subtracts a mean (LayerNorm, GroupNorm): true of every built-in network.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call

from earlyprune.masks.density import layer_density, overall_density
from earlyprune.masks.mask import Mask, check_mask, prunable

_MAX_TO_AVG = {
    nn.MaxPool1d: nn.AvgPool1d,
    nn.MaxPool2d: nn.AvgPool2d,
    nn.MaxPool3d: nn.AvgPool3d,
}
_ADAPTIVE = {
    nn.AdaptiveMaxPool1d: nn.AdaptiveAvgPool1d,
    nn.AdaptiveMaxPool2d: nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool3d: nn.AdaptiveAvgPool3d,
}
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


class DisconnectedMask(ValueError):
    """A mask that keeps no weight, or leaves no input→output path (a user mistake)."""


_HINT = "lower the sparsity, or pass allow_disconnected=True (--allow-disconnected) to train it"
#: The part of every refusal's message (unchanged since refusals began) by which a ``failed``
#: result that older sweeps stored for a disconnected mask is recognized and run again.
_REFUSAL_MARK = "(--allow-disconnected) to train it"


def is_disconnected_refusal(error: object) -> bool:
    """Whether a stored ``error`` is this module's refusal of a disconnected mask.

    Sweeps before the ``disconnected`` status stored such runs as ``failed``; they are an
    outcome (trained, at chance), so sweeps and ``earlyprune run`` redo them without
    ``--retry-failed``.
    """
    return isinstance(error, str) and _REFUSAL_MARK in error


def is_disconnected(effective: Mapping[str, Tensor]) -> bool:
    """Whether an effective mask (:func:`effective_mask`) keeps no weight: every input→output
    path is cut, so the network's output does not depend on its input (run status
    ``disconnected``)."""
    return not any(bool(m.any()) for m in effective.values())


def _average_pools(net: nn.Module) -> None:
    """Replaces every max-pooling module of ``net`` in place by the matching average pooling."""
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            kind = type(child)
            if kind in _MAX_TO_AVG:
                stride = child.stride if child.stride is not None else child.kernel_size
                swap: nn.Module = _MAX_TO_AVG[kind](
                    child.kernel_size, stride, child.padding, ceil_mode=child.ceil_mode
                )
                if child.dilation not in (1, (1,), (1, 1), (1, 1, 1)):
                    raise ValueError(f"cannot trace paths through dilated max-pooling {name!r}")
                setattr(parent, name, swap)
            elif kind in _ADAPTIVE:
                setattr(parent, name, _ADAPTIVE[kind](child.output_size))


def _input_shape(model: nn.Module, input_shape: Sequence[int] | None) -> tuple[int, ...]:
    if input_shape is not None:
        return tuple(int(d) for d in input_shape)
    first = next(iter(prunable(model).values()), None)
    layers = [m for m in model.modules() if getattr(m, "weight", None) is first]
    if layers and isinstance(layers[0], nn.Linear):
        return (layers[0].in_features,)
    raise ValueError("effective density needs the input shape of this network: pass input_shape")


def effective_mask(
    model: nn.Module, mask: Mapping[str, Tensor], input_shape: Sequence[int] | None = None
) -> Mask:
    """The kept weights that lie on at least one input→output path.

    Args:
        model: Any ``nn.Module`` (left untouched).
        mask: A bool mask over ``prunable(model)``.
        input_shape: Shape of one input without the batch dimension, e.g. (3, 32, 32); may be
            left out for networks whose first prunable layer is ``nn.Linear``.

    Returns:
        A mask with the same keys, True where the weight is kept *and* effective.
    """
    checked = check_mask(model, mask)
    shape = _input_shape(model, input_shape)
    net = copy.deepcopy(model).double().eval()
    _average_pools(net)
    weights = prunable(net)
    ids = {id(w) for w in weights.values()}
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, _NORMS):
                module.reset_running_stats()
                if module.weight is not None:
                    module.weight.fill_(1.0)
                    module.bias.zero_()
            elif id(getattr(module, "weight", None)) in ids and module.bias is not None:
                module.bias.zero_()  # a bias is not an input: it must not open paths
    for p in net.parameters():
        p.requires_grad_(False)
    leaves = {}
    for name, w in weights.items():
        # A positive factor per layer keeps the zero pattern and the magnitudes near 1.
        scale = 1.0 / math.sqrt(max(1, w[0].numel()))
        leaves[name] = (checked[name].to(w.device, torch.float64) * scale).requires_grad_(True)
    device = next(iter(weights.values())).device
    ones = torch.ones((1, *shape), dtype=torch.float64, device=device)
    try:
        out = functional_call(net, leaves, (ones,))
    except RuntimeError as exc:  # a guessed or wrong shape
        raise ValueError(
            f"cannot trace paths through this network with input shape {shape}: pass "
            f"input_shape ({str(exc).splitlines()[0][:120]})"
        ) from None
    if not out.requires_grad:  # the output depends on no weight at all
        return {n: torch.zeros_like(m) for n, m in checked.items()}
    grads = torch.autograd.grad(out.sum(), list(leaves.values()), allow_unused=True)
    return {
        n: checked[n] & (g != 0) if g is not None else torch.zeros_like(checked[n])
        for n, g in zip(leaves, grads, strict=True)
    }


def effective_density(
    model: nn.Module, mask: Mapping[str, Tensor], input_shape: Sequence[int] | None = None
) -> float:
    """Share of all prunable weights that are kept and on an input→output path (see module doc)."""
    return overall_density(effective_mask(model, mask, input_shape))


def layer_effective_density(
    model: nn.Module, mask: Mapping[str, Tensor], input_shape: Sequence[int] | None = None
) -> dict[str, float]:
    """Per prunable layer: share of its weights that are kept and on an input→output path."""
    return layer_density(effective_mask(model, mask, input_shape))


def check_connected(
    model: nn.Module, mask: Mapping[str, Tensor], input_shape: Sequence[int] | None
) -> None:
    """Raises ``ValueError`` (one line, naming the layers) for a mask that keeps no weight, or
    whose empty layers cut every input→output path.

    Only masks with an empty layer are traced (``input_shape`` None then means "cannot tell",
    which is refused too): a mask that keeps some weight in every layer is let through unless it
    keeps none at all.
    """
    kept = {n: int(torch.count_nonzero(m)) for n, m in mask.items()}
    total = sum(m.numel() for m in mask.values())
    if sum(kept.values()) == 0:
        raise DisconnectedMask(f"the mask keeps none of the {total:,} weights; {_HINT}")
    empty = [n for n, k in kept.items() if k == 0]
    if not empty:
        return
    names = ", ".join(empty[:6]) + (f" and {len(empty) - 6} more" if len(empty) > 6 else "")
    try:
        alive = effective_mask(model, mask, input_shape)
    except ValueError:
        raise DisconnectedMask(
            f"layer(s) {names} keep no weight, and without the input shape (batch=) it cannot "
            f"be checked that a path from input to output remains; {_HINT}"
        ) from None
    if sum(int(torch.count_nonzero(m)) for m in alive.values()) == 0:
        raise DisconnectedMask(
            f"the mask leaves no path from input to output: layer(s) {names} keep no weight; "
            f"{_HINT}"
        )


def preflight(
    build: Callable[[], nn.Module],
    sparsity: float,
    scope: str,
    input_shape: Sequence[int],
) -> None:
    """Refuses, before any run starts, what the removal counts alone make degenerate.

    A sparsity that rounds to keeping no weight, and (``scope="layer"``) per-layer counts that
    empty layers whose loss cuts every path even with all other weights kept. ``build`` makes
    the network (its weights do not matter: only shapes and structure are used).

    Raises:
        DisconnectedMask: One line, as :func:`check_connected`.
    """
    from earlyprune.masks.mask import _layer_removals, density_schedule

    with torch.device("meta"):  # shapes only: nothing is allocated or initialized
        sizes = {n: p.numel() for n, p in prunable(build()).items()}
    total = sum(sizes.values())
    keep = density_schedule(sparsity, 1, total)[-1]
    if keep == 0:
        raise DisconnectedMask(f"the mask keeps none of the {total:,} weights; {_HINT}")
    if scope != "layer":
        return
    shapes = {n: torch.empty(s, dtype=torch.bool) for n, s in sizes.items()}
    removals = _layer_removals(shapes, list(sizes.values()), keep, None)
    if any(r == sizes[n] for n, r in zip(sizes, removals, strict=True)):
        model = build()
        mask = {
            n: torch.full_like(p, r < p.numel(), dtype=torch.bool)
            for (n, p), r in zip(prunable(model).items(), removals, strict=True)
        }
        check_connected(model, mask, input_shape)


__all__ = [
    "DisconnectedMask",
    "check_connected",
    "effective_density",
    "effective_mask",
    "is_disconnected",
    "is_disconnected_refusal",
    "layer_effective_density",
]
