"""The training state at a point known to be finite, kept on the device to go back to.

The loop reads the loss back only every few steps (:class:`~earlyprune.train.watch.LossWatch`),
so when a loss turns NaN the steps after it have already been taken. A diverged run must still
store what it stored when every step was read (the model and optimizer just before the first
non-finite loss): the loop goes back to the last :class:`SafePoint` and replays from there
reading every step. Data order and augmentation depend only on (seed, epoch, step), so the
replay recomputes the same steps bit for bit.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["SafePoint"]


def _clone(value: Any) -> Any:
    return value.detach().clone() if isinstance(value, Tensor) else value


class SafePoint:
    """A device copy of a model's state, its optimizer's state and the RNG state at one step.

    Taking one copies tensors on the device (no host read-back); ``restore`` copies them back
    in place, so the optimizer keeps its parameters and any hooks stay attached.

    Args:
        model: The network being trained.
        optimizer: Its optimizer.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.model, self.optimizer = model, optimizer
        self.step = -1
        self._tensors: dict[str, Tensor] = {}
        self._state: dict[Any, dict[str, Any]] = {}
        self._rng: Tensor | None = None
        self._cuda_rng: Tensor | None = None

    def take(self, step: int) -> None:
        """Remembers the state now, as the state at ``step``."""
        self.step = step
        self._tensors = {k: _clone(v) for k, v in self.model.state_dict().items()}
        self._state = {
            p: {k: _clone(v) for k, v in s.items()} for p, s in self.optimizer.state.items()
        }
        self._rng = torch.get_rng_state()
        device = next(self.model.parameters()).device
        self._cuda_rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    def restore(self) -> int:
        """Puts the remembered state back; returns its step."""
        if self.step < 0:
            raise RuntimeError("no safe point was taken")
        with torch.no_grad():
            for k, v in self.model.state_dict().items():
                v.copy_(self._tensors[k])
        self.optimizer.state.clear()
        for p, s in self._state.items():
            self.optimizer.state[p] = {k: _clone(v) for k, v in s.items()}
        torch.set_rng_state(self._rng)  # type: ignore[arg-type]
        if self._cuda_rng is not None:
            device = next(self.model.parameters()).device
            torch.cuda.set_rng_state(self._cuda_rng, device)
        return self.step
