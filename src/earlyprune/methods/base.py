"""The method, allocation and placement registries, and the pieces every scorer shares.

A method turns (model, batch, current mask) into ``Scores`` (higher = keep) and knows nothing of
sparsity, rounds or inversion: those live in :mod:`earlyprune.masks.mask` and :func:`earlyprune.prune`.
Scorers never modify the model: they read weights through ``torch.func.functional_call`` with
masked copies, and restore the training mode and buffers (BatchNorm running statistics) after.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from earlyprune.core.registry import Registry
from earlyprune.masks.mask import Mask, Scores, prunable

Batch = tuple[Tensor, Tensor]
#: (model, batch, mask, seed) -> scores for one round.
ScoreFn = Callable[[nn.Module, Batch | None, Mask, int], Scores]
#: (model, batch, seed) -> a scorer for successive masks (lets a method set up once per prune).
PrepareFn = Callable[[nn.Module, Batch | None, int], Callable[[Mask], Scores]]
Fn = TypeVar("Fn", bound=Callable[..., object])


@dataclass(frozen=True)
class Method:
    """A registered pruning method.

    Attributes:
        name: Registry name.
        prepare: Builds a per-prune scorer ``mask -> scores``.
        rounds: Default number of pruning rounds (100 for SynFlow, 1 otherwise).
        needs_batch: Whether the scorer reads the batch's labels (SynFlow only uses its shape).
        summary: One line for `earlyprune list` and the README: what is scored, which direction.
        revive: Each round selects among *all* weights, so pruned ones can come back (FORCE);
            otherwise a round only selects among the survivors of the previous one.
        budgeted: The scorer takes the round's survivor count as a second argument,
            ``scorer(mask, n_keep)`` (PHEW builds its mask until that budget is met);
            :func:`earlyprune.score` passes ``None`` (the method's own default budget).
        allocation: Default allocation of the method (None: its own scores decide the layer
            counts); the baselines ``erk``, ``uniform``, ... set it, with placement "random".
        placement: Default placement (None: its own scores pick the weights in each layer).
    """

    name: str
    prepare: PrepareFn
    rounds: int = 1
    needs_batch: bool = True
    summary: str = ""
    revive: bool = False
    budgeted: bool = False
    allocation: str | None = None
    placement: str | None = None


METHODS: Registry[Method] = Registry("method")


def register_method(
    name: str,
    *,
    rounds: int = 1,
    needs_batch: bool = True,
    summary: str = "",
    revive: bool = False,
    budgeted: bool = False,
    allocation: str | None = None,
    placement: str | None = None,
    prepared: bool = False,
) -> Callable[[Fn], Fn]:
    """Registers a scorer as method ``name`` (the fields are those of :class:`Method`).

    The decorated function is a one-round scorer ``fn(model, batch, mask, seed) -> Scores``, or,
    with ``prepared=True``, a ``prepare(model, batch, seed) -> (mask -> Scores)`` that sets up
    once per prune (SynFlow's float64 copy, PHEW's walk graph). It is returned unchanged.
    """

    def decorate(fn: Fn) -> Fn:
        if prepared:
            prepare = fn
        else:

            def prepare(
                model: nn.Module, batch: Batch | None, seed: int
            ) -> Callable[[Mask], Scores]:
                return lambda mask: fn(model, batch, mask, seed)

        method = Method(
            name, prepare, rounds, needs_batch, summary, revive, budgeted, allocation, placement
        )
        METHODS.add(name, method)
        return fn

    return decorate


Shape = tuple[int, ...]
#: (shapes in network order, total kept) -> real-valued kept count per layer.
Rule = Callable[[Sequence[Shape], int], list[float]]


@dataclass(frozen=True)
class Allocation:
    """A registered allocation: its name, rule and a one-line summary with its source."""

    name: str
    rule: Rule
    summary: str = ""


ALLOCATIONS: Registry[Allocation] = Registry("allocation")
PLACEMENTS: Registry[Method] = Registry("placement")


def register_allocation(name: str, *, summary: str) -> Callable[[Rule], Rule]:
    """Registers ``rule(shapes, n_keep) -> quotas`` as allocation ``name``; returns it unchanged.

    Only the allocation: its random-placement baseline *method* is registered on its own, in
    :mod:`earlyprune.methods.baselines`.
    """

    def decorate(rule: Rule) -> Rule:
        ALLOCATIONS.add(name, Allocation(name, rule, summary))
        return rule

    return decorate


def register_placement(name: str, *, summary: str) -> Callable[[ScoreFn], ScoreFn]:
    """Registers a scorer ``fn(model, batch, mask, seed) -> Scores`` as placement ``name``."""

    def decorate(fn: ScoreFn) -> ScoreFn:
        def prepare(model: nn.Module, batch: Batch | None, seed: int) -> Callable[[Mask], Scores]:
            return lambda mask: fn(model, batch, mask, seed)

        PLACEMENTS.add(name, Method(name, prepare, needs_batch=False, summary=summary))
        return fn

    return decorate


def method_from_function(name: str, fn: Callable[..., Scores], summary: str = "") -> Method:
    """Wraps a user scoring function as a ``Method`` (for `check-method`, ``ep.prune``, ``ep.score``).

    Two signatures are accepted: ``fn(model, batch, mask, seed)`` — the one ``@register_method``
    scorers have, called with the current mask each round — and the short ``fn(model, batch)``,
    which sees no mask (fine for one-shot pruning). The model's mode and buffers are restored
    after each call.
    """
    from earlyprune.core.user_functions import arity

    n_args = arity(fn)
    if n_args is None:
        raise ValueError(
            f"scoring function {name!r} must take (model, batch, mask, seed) or (model, batch)"
        )

    def prepare(model: nn.Module, batch: Batch | None, seed: int) -> Callable[[Mask], Scores]:
        def score(mask: Mask) -> Scores:
            with preserved_state(model):
                out = fn(model, batch, mask, seed) if n_args == 4 else fn(model, batch)
            if not isinstance(out, dict):
                raise ValueError(
                    f"scoring function {name!r} must return dict[str, Tensor], "
                    f"got {type(out).__name__}"
                )
            return {k: torch.as_tensor(v).detach() for k, v in out.items()}

        return score

    return Method(name, prepare, 1, True, summary or f"user scoring function {name}")


@contextlib.contextmanager
def preserved_state(model: nn.Module) -> Iterator[None]:
    """Restores training mode and every buffer (BatchNorm statistics) on exit."""
    modes = {m: m.training for m in model.modules()}
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)
        for m, mode in modes.items():
            m.training = mode


def masked_leaves(model: nn.Module, mask: Mask, dtype: torch.dtype | None = None) -> Scores:
    """Fresh leaf tensors w ⊙ m (requiring grad) for every prunable weight; the model is untouched."""
    out = {}
    for name, p in prunable(model).items():
        w = p.detach() * mask[name]  # a bool mask multiplies without a float temporary
        out[name] = (w if dtype is None else w.to(dtype)).requires_grad_(True)
    return out


def check_batch(batch: Batch | None, method: str) -> Batch:
    """Validates a (inputs, labels) batch for a method that needs data."""
    if batch is None:
        raise ValueError(f"method {method!r} needs a batch: pass batch=(inputs, labels)")
    if not (isinstance(batch, tuple | list) and len(batch) == 2):
        raise ValueError(f"batch must be a pair (inputs, labels), got {type(batch).__name__}")
    x, y = batch
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise ValueError("batch must hold two tensors (inputs, labels)")
    if y.dim() != 1 or y.dtype == torch.bool or y.is_floating_point() or y.is_complex():
        hint = " (one-hot? pass labels.argmax(1))" if y.dim() == 2 else ""
        raise ValueError(
            f"batch labels must be class indices, an integer tensor of shape (N,); "
            f"got {y.dtype} of shape {tuple(y.shape)}{hint}"
        )
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"batch has {x.shape[0]} inputs but {y.shape[0]} labels")
    if not x.is_floating_point():
        raise ValueError(f"batch inputs must be floating point (normalized images), got {x.dtype}")
    return x, y


def loss_of(model: nn.Module, weights: Scores, batch: Batch, temperature: float = 1.0) -> Tensor:
    """Cross-entropy of ``model`` run with ``weights`` substituted, checking labels fit."""
    x, y = batch
    w = next(iter(weights.values()), None)
    if w is not None and w.is_floating_point() and x.dtype != w.dtype:
        raise ValueError(
            f"batch inputs are {x.dtype} but the model's weights are {w.dtype}: "
            f"convert one, e.g. inputs.to({w.dtype})"
        )
    try:
        logits = functional_call(model, weights, (x,))
    except RuntimeError as exc:  # torch's shape errors name matrices, not the user's mistake
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if not any(word in text for word in ("shape", "size", "channels", "dimension")):
            raise
        raise ValueError(
            f"the model cannot take inputs of shape {tuple(x.shape[1:])} (one "
            f"example); expected the input shape it was built for ({text})"
        ) from None
    if logits.dim() != 2:
        raise ValueError(f"model output must be (batch, classes) logits, got {tuple(logits.shape)}")
    if int(y.min()) < 0 or int(y.max()) >= logits.shape[1]:
        raise ValueError(
            f"batch labels span {int(y.min())}..{int(y.max())} but the model has "
            f"{logits.shape[1]} outputs (valid labels 0..{logits.shape[1] - 1})"
        )
    return F.cross_entropy(logits / temperature, y)
