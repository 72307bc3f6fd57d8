"""Setting a scorer up for a prune: a stand-in batch for data-free methods, and a guard.

A method not shipped with the package runs against a saved copy of the model's state, so a
scorer that edits weights is refused with one clear line and the model is put back.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

from earlyprune.masks.mask import Scores, prunable
from earlyprune.methods.base import Batch, Method
from earlyprune.methods.scoring import BUILT_IN


def guarded_prepare(
    m: Method, model: nn.Module, batch: Batch | None, seed: int
) -> Callable[..., Scores]:
    """``m.prepare(...)``; for a method not shipped with the package, checked to edit nothing.

    Built-in scorers are held to leaving the model bit for bit unchanged by a test that runs
    every one of them, so they pay nothing here. Any other scorer runs against a copy of the
    model's state taken first: after ``prepare`` and after every call, its parameters are
    compared with the copy, and everything (parameters, gradients, buffers, training mode) is
    put back. Changed parameters are refused (the scores were computed on other weights);
    gradients, buffers and mode are only restored, as a forward or backward pass in training
    mode changes them innocently (BatchNorm statistics, ``loss.backward()``).
    """
    if batch is None and not m.needs_batch:  # data-free: the input shape is all it reads
        batch = shape_only_batch(model)
    if BUILT_IN.get(m.name) is m:
        return m.prepare(model, batch, seed)
    saved = _ModelState(model)
    with saved.checked(m.name):
        inner = m.prepare(model, batch, seed)

    def scorer(*args: object) -> Scores:
        with saved.checked(m.name):
            return inner(*args)

    return scorer


#: Inputs per output unit of the stand-in batch: as many as a run's scoring batch holds
#: (``RunSpec.scoring_per_class``), so NTK-SAP draws as many Gaussian inputs as in a run.
STAND_IN_PER_CLASS = 10


def known_input_shape(model: nn.Module) -> tuple[int, ...] | None:
    """The shape of one input of ``model`` (no batch dimension), where it can be known.

    Networks from :func:`earlyprune.create_model` carry it (``model.input_shape``); a network
    whose first prunable layer is a ``Linear`` takes ``(in_features,)``. None otherwise.
    """
    shape = getattr(model, "input_shape", None)
    if (
        isinstance(shape, tuple | list)
        and shape
        and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)
    ):
        return tuple(shape)
    first = next(iter(prunable(model).values()), None)
    for module in model.modules():
        if isinstance(module, nn.Linear) and module.weight is first:
            return (module.in_features,)
    return None


def shape_only_batch(model: nn.Module) -> Batch | None:
    """A stand-in batch for data-free methods: shapes only, on the ``meta`` device (no values).

    ``STAND_IN_PER_CLASS`` inputs per output of the last prunable layer, the size of a run's
    scoring batch. A method that reads values from it fails at once instead of scoring on
    made-up data. None when the input shape cannot be known (the method then asks for a batch).
    """
    shape = known_input_shape(model)
    weights = list(prunable(model).values())
    if shape is None or not weights:
        return None
    n = STAND_IN_PER_CLASS * weights[-1].shape[0]
    x = torch.empty((n, *shape), device="meta")
    return x, torch.empty(n, dtype=torch.long, device="meta")


class _ModelState:
    """A copy of a model's parameters, gradients, buffers and modes, to check and restore."""

    def __init__(self, model: nn.Module):
        self.modes = [(mod, mod.training) for mod in model.modules()]
        self.params = [
            (mod, name, p, p.detach().clone(), _copy(p.grad), p.requires_grad)
            for mod in model.modules()
            for name, p in mod.named_parameters(recurse=False)
        ]
        self.buffers = [
            (mod, name, b, b.detach().clone())
            for mod in model.modules()
            for name, b in mod.named_buffers(recurse=False)
        ]
        self.names = {id(p): n for n, p in model.named_parameters()}

    @contextlib.contextmanager
    def checked(self, method: str) -> Iterator[None]:
        """Runs the block, restores the state, and refuses the block if it edited a parameter."""
        try:
            yield
        finally:
            changed = self.restore()
        if changed:
            more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
            raise ValueError(
                f"scoring method {method!r} changed the model's weights ({', '.join(changed[:3])}"
                f"{more}); scoring must leave them as they are: work on a copy "
                "(copy.deepcopy(model)) or on detached tensors (the model was put back)"
            )

    @torch.no_grad()
    def restore(self) -> list[str]:
        """Puts everything back; returns the names of the parameters that had changed."""
        changed = []
        for mod, name, p, value, grad, requires_grad in self.params:
            now = mod._parameters.get(name)
            moved = p.shape != value.shape or p.dtype != value.dtype or p.device != value.device
            if now is not p or moved or not _same(p, value):
                changed.append(self.names.get(id(p), name))
                mod._parameters[name] = p  # a replaced Parameter object: the original comes back
                if moved:  # ``p.data = ...`` swapped the tensor under the Parameter
                    p.data = value.clone()
                else:
                    p.copy_(value)
            p.grad = _copy(grad)
            p.requires_grad_(requires_grad)
        for mod, name, b, value in self.buffers:
            mod._buffers[name] = b
            if b.shape != value.shape or b.dtype != value.dtype or b.device != value.device:
                b.data = value.clone()
            elif not _same(b, value):
                b.copy_(value)
        for mod, mode in self.modes:
            mod.training = mode
        return changed


def _copy(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.detach().clone()


_SAME_SIZE_INT = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _same(a: Tensor, b: Tensor) -> bool:
    """Bit for bit equal (``torch.equal`` calls NaN unequal to itself and -0.0 equal to 0.0)."""
    bits = _SAME_SIZE_INT.get(a.element_size())
    if not a.is_floating_point() or bits is None:
        return torch.equal(a, b)
    return torch.equal(a.reshape(-1).view(bits), b.reshape(-1).view(bits))
