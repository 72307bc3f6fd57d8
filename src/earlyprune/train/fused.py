"""Fused training: K masked networks of one architecture trained as one stacked model.

The members' parameters and buffers are stacked along a new leading dimension
(``torch.func.stack_module_state``) and the network runs once per step under ``torch.func.vmap``
with ``functional_call``, so it works for any ``nn.Module`` without a forward that draws random
numbers. Each member keeps what its solo run has: its own weights, optimizer state (the
optimizer of ``train.optim`` over the stacked tensors; SGD, Adam and AdamW are elementwise, so
each slice gets its solo update), mask (pruned weights and their optimizer state zeroed after
every step, gradients masked before it, as ``masks.keep`` does), BatchNorm running statistics
(per-member buffers; vmap computes batch statistics per member) and data order and
augmentation (``bundle.train_batches`` with the member's seed: its solo batches). The LR
schedule is one for all. A member whose loss becomes non-finite is frozen at the state its
solo run would stop in and reported diverged; the others go on.

Fused numbers are not solo numbers bit for bit (a batched convolution sums in another order;
the pack trains in NCHW), so a fused run's identity says which engine made it. They never depend
on the partners: vmap keeps members apart (tested bit-identically).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from earlyprune.train.fused_state import (
    PACK_FORMAT,
    member_slice,
    slice_optimizer_state,
    stack_optimizer_states,
)
from earlyprune.train.loop import TrainState, autocast
from earlyprune.train.optim import OPTIMIZERS, Schedule

__all__ = ["FusedPack", "Member", "PackState", "PackCallback"]


@dataclass
class Member:
    """One run of a pack: its initial network, data seed and mask (None = dense)."""

    model: nn.Module
    seed: int
    mask: Mapping[str, Tensor] | None = None
    name: str = ""


@dataclass
class PackState:
    """Where a pack stands: the shared step, each member's curve and divergence step."""

    step: int = 0
    curves: list[list[dict[str, Any]]] = field(default_factory=list)
    diverged_at: list[int | None] = field(default_factory=list)

    @classmethod
    def fresh(cls, k: int) -> PackState:
        return cls(0, [[] for _ in range(k)], [None] * k)

    def member(self, k: int) -> TrainState:
        """Member ``k``'s state as its solo run would report it (step at divergence if so)."""
        stopped = self.diverged_at[k]
        step = self.step if stopped is None else stopped
        return TrainState(step=step, curve=list(self.curves[k]), diverged=stopped is not None)


PackCallback = Callable[[int, "FusedPack", PackState], None]


class FusedPack:
    """The stacked model and optimizer of K members (see the module docstring).

    Args:
        members: At least one member; all of one architecture, on one device.
        sched: The shared schedule (its optimizer, momentum, weight decay, label smoothing).
        precision: "fp32" or "bf16" (autocast), as the solo loop's ``precision``.

    Raises:
        ValueError: If the members' networks differ in parameter or buffer names or shapes.
    """

    def __init__(self, members: Sequence[Member], sched: Schedule, precision: str = "fp32") -> None:
        if not members:
            raise ValueError("a pack needs at least one member")
        _check_same_architecture([m.model for m in members])
        self.k = len(members)
        self.seeds = [m.seed for m in members]
        self.names = [m.name or str(i) for i, m in enumerate(members)]
        self.sched = sched
        self._precision = precision
        self.base = copy.deepcopy(members[0].model)  # structure only: its tensors are never read
        self.params, self.buffers = stack_module_state([m.model for m in members])
        self.device = next(iter(self.params.values())).device
        self.masks = _stack_masks(members, self.params)
        self.optimizer = OPTIMIZERS.get(sched.optimizer)(list(self.params.values()), sched)
        self._shapes = [p.shape for p in self.params.values()]
        self._frozen: dict[int, dict[str, Tensor]] = {}
        self.apply_masks()

    # ---- one step ---------------------------------------------------------------------------
    def _loss(self, params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor, y: Tensor):
        out = functional_call(self.base, (params, buffers), (x,))
        return F.cross_entropy(out, y, label_smoothing=self.sched.label_smoothing)

    def step(self, xs: Tensor, ys: Tensor, lr: float, step: int, state: PackState) -> list[float]:
        """One optimizer step of every member on its batch ``xs[k], ys[k]``; returns the losses.

        A member whose loss is not finite is marked diverged at ``step`` (``state``) and frozen.
        """
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with autocast(self.device, self._precision):
            losses = _vmapped(self._loss)(self.params, self.buffers, xs, ys)
        values = losses.detach().float().tolist()  # one read-back per step, as a solo run does
        for k, v in enumerate(values):
            if state.diverged_at[k] is None and not math.isfinite(v):
                state.diverged_at[k] = step
                self._frozen[k] = self._member_tensors(k)  # as its solo run stops: before the step
        self.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()  # d(sum)/d(loss_k) = 1: each member gets its own gradient
        with torch.no_grad():
            for name, m in self.masks.items():
                grad = self.params[name].grad
                if grad is not None:
                    grad.mul_(m)
        self.optimizer.step()
        self.apply_masks()
        self._restore_frozen()
        return values

    @torch.no_grad()
    def apply_masks(self) -> None:
        """Zeroes every member's pruned weights and their optimizer state (as ``keep_pruned``)."""
        for name, m in self.masks.items():
            p = self.params[name]
            p.mul_(m)
            for value in self.optimizer.state.get(p, {}).values():
                if isinstance(value, Tensor) and value.shape == p.shape:
                    value.mul_(m)

    # ---- frozen (diverged) members ----------------------------------------------------------
    def _member_tensors(self, k: int) -> dict[str, Tensor]:
        out = {f"p:{n}": t[k].detach().clone() for n, t in self.params.items()}
        out.update({f"b:{n}": t[k].clone() for n, t in self.buffers.items()})
        for i, p in enumerate(self.params.values()):
            for key, value in self.optimizer.state.get(p, {}).items():
                if isinstance(value, Tensor) and value.shape == p.shape:
                    out[f"o:{i}:{key}"] = value[k].clone()
        return out

    @torch.no_grad()
    def _restore_frozen(self) -> None:
        for k, saved in self._frozen.items():
            for n, t in self.params.items():
                t[k].copy_(saved[f"p:{n}"])
            for n, t in self.buffers.items():
                t[k].copy_(saved[f"b:{n}"])
            for i, p in enumerate(self.params.values()):
                for key, value in self.optimizer.state.get(p, {}).items():
                    if isinstance(value, Tensor) and value.shape == p.shape:
                        # State created by the diverging step itself (momentum at step 0): zero.
                        old = saved.get(f"o:{i}:{key}")
                        value[k].copy_(old) if old is not None else value[k].zero_()

    # ---- evaluation and state ---------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, batches: Any) -> list[tuple[float, float]]:
        """Each member's (accuracy, mean loss) over ``batches`` in eval mode (as ``evaluate``)."""
        self.base.eval()
        correct, loss_sum, total = [0] * self.k, [0.0] * self.k, 0

        def forward(params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor) -> Tensor:
            return functional_call(self.base, (params, buffers), (x,))

        try:
            with autocast(self.device, self._precision):
                for x, y in batches:
                    out = _vmapped(forward, (0, 0, None))(self.params, self.buffers, x).float()
                    for k in range(self.k):
                        loss_sum[k] += float(F.cross_entropy(out[k], y, reduction="sum"))
                        correct[k] += int((out[k].argmax(1) == y).sum())
                    total += y.numel()
        finally:
            self.base.train()
        return [
            (c / max(total, 1), s / max(total, 1)) for c, s in zip(correct, loss_sum, strict=True)
        ]

    def model_state(self, k: int) -> dict[str, Tensor]:
        """Member ``k``'s ``state_dict`` (the keys and order of its solo network's)."""
        params, buffers = member_slice(self.params, k), member_slice(self.buffers, k)
        return {key: params.get(key, buffers.get(key)) for key in self.base.state_dict()}

    def write_back(self, k: int, model: nn.Module) -> None:
        """Copies member ``k``'s weights and buffers into ``model`` (e.g. its solo network)."""
        model.load_state_dict(self.model_state(k))

    def checkpoint(self, state: PackState) -> dict[str, Any]:
        """The pack's state: per member, the solo checkpoint format (model, optimizer, step, curve)."""
        opt = self.optimizer.state_dict()
        members = []
        for k in range(self.k):
            solo = state.member(k)
            members.append(
                {
                    "model": self.model_state(k),
                    "optimizer": slice_optimizer_state(opt, self._shapes, k),
                    "step": solo.step,
                    "curve": solo.curve,
                }
            )
        return {
            "format": PACK_FORMAT,
            "names": list(self.names),
            "step": state.step,
            "diverged_at": list(state.diverged_at),
            "members": members,
        }

    @torch.no_grad()
    def restore(self, ckpt: Mapping[str, Any]) -> PackState:
        """Loads what :meth:`checkpoint` returned (for this pack's members); returns its state.

        Raises:
            ValueError: If the checkpoint is of another pack (other member names or count).
        """
        if list(ckpt["names"]) != self.names:
            raise ValueError(f"checkpoint of pack {ckpt['names']} does not fit pack {self.names}")
        members = ckpt["members"]
        for name, t in (*self.params.items(), *self.buffers.items()):
            t.copy_(torch.stack([m["model"][name] for m in members]))
        opt = stack_optimizer_states([m["optimizer"] for m in members], self._shapes)
        self.optimizer.load_state_dict(opt)
        state = PackState(int(ckpt["step"]), [list(m["curve"]) for m in members], [])
        state.diverged_at = [None if s is None else int(s) for s in ckpt["diverged_at"]]
        # Frozen members' slices hold their frozen values already: keep them as they are.
        self._frozen = {
            k: self._member_tensors(k) for k, s in enumerate(state.diverged_at) if s is not None
        }
        return state


def _vmapped(fn: Callable[..., Tensor], in_dims: tuple[int | None, ...] = (0, 0, 0, 0)):
    # randomness="error": a forward that draws random numbers (dropout) would draw them
    # differently from its solo run; refuse rather than train something else.
    return vmap(fn, in_dims=in_dims, randomness="error")


def _check_same_architecture(models: Sequence[nn.Module]) -> None:
    def layout(m: nn.Module) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
        tensors = [*m.named_parameters(), *m.named_buffers()]
        return [(n, tuple(t.shape), t.dtype) for n, t in tensors]

    first = layout(models[0])
    for i, m in enumerate(models[1:], start=1):
        if type(m) is not type(models[0]) or layout(m) != first:
            raise ValueError(
                f"pack member {i} is not the same network as member 0 (parameter or buffer "
                "names, shapes or types differ); only runs of one architecture can be fused"
            )


def _stack_masks(members: Sequence[Member], params: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Stacked float masks of every name some member masks (ones for members without)."""
    names = [n for n in params if any(m.mask is not None and n in m.mask for m in members)]
    out = {}
    for name in names:
        p = params[name]
        rows = []
        for m in members:
            given = m.mask.get(name) if m.mask is not None else None
            if given is not None and given.dtype != torch.bool:
                raise ValueError(f"mask[{name!r}] of member {m.name!r} is not a bool tensor")
            rows.append(torch.ones_like(p[0]) if given is None else given.to(p.device, p.dtype))
        out[name] = torch.stack(rows)
    return out
