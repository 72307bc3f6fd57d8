"""The training loss, summed and checked on the device and read back only now and then.

``float(loss)`` every step makes the host wait for the step's kernels each time: a launch-bound
network (ResNet-20 at batch 128 on a big GPU) then idles between steps. :class:`LossWatch` keeps
the running sum (float64, so it is bit for bit the Python sum of ``float(loss)`` the loop kept
before: the same IEEE double additions in the same order) and the first step whose loss was not
finite on the device, and reads them in one transfer when asked: every ``every`` steps and at
the end of an epoch. Divergence is still caught, at most ``every − 1`` steps late, and the step
it happened at is still known exactly (``first_bad``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["LossWatch", "Reading"]


@dataclass(frozen=True)
class Reading:
    """One read-back of a :class:`LossWatch`.

    Attributes:
        loss_sum: Sum of the finite losses added since the last ``reset``.
        count: Number of losses added since the last ``reset``.
        first_bad: Step (as passed to ``add``) of the first non-finite loss, or None.
    """

    loss_sum: float
    count: int
    first_bad: int | None

    @property
    def mean(self) -> float:
        """Mean loss over the steps added (0.0 for none)."""
        return self.loss_sum / max(self.count, 1)

    @property
    def diverged(self) -> bool:
        """Whether some loss was NaN or infinite."""
        return self.first_bad is not None


class LossWatch:
    """Device-side loss sum and non-finite detector.

    Args:
        device: Where the losses live.
        every: Read back at most once per this many steps in :meth:`due` (≥ 1).
    """

    def __init__(self, device: torch.device | str, every: int = 50) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive integer, got {every!r}")
        self.device = torch.device(device)
        self.every = every
        #: Host read-backs made so far (each one synchronizes with the device).
        self.reads = 0
        self._sum = torch.zeros((), dtype=torch.float64, device=self.device)
        # -1 while every loss was finite; a step index (as float64, exact below 2⁵³) after.
        self._first_bad = torch.full((), -1.0, dtype=torch.float64, device=self.device)
        self._count = 0
        self._since_read = 0

    def add(self, loss: Tensor, step: int) -> None:
        """Adds one step's loss (a 0-dim tensor) without reading it.

        A non-finite loss is recorded as ``first_bad`` (if none was before) and left out of the
        sum; the caller stops at the next read that reports it.
        """
        value = loss.detach().to(torch.float64)
        finite = torch.isfinite(value)
        self._sum += torch.where(finite, value, torch.zeros_like(value))
        fresh = torch.logical_and(~finite, self._first_bad < 0)
        self._first_bad = torch.where(fresh, torch.full_like(value, float(step)), self._first_bad)
        self._count += 1
        self._since_read += 1

    def due(self) -> bool:
        """Whether ``every`` steps were added since the last read (no device access)."""
        return self._since_read >= self.every

    def read(self) -> Reading:
        """One host read-back of the sum and the first bad step."""
        loss_sum, first_bad = torch.stack([self._sum, self._first_bad]).tolist()
        self.reads += 1
        self._since_read = 0
        return Reading(loss_sum, self._count, None if first_bad < 0 else int(first_bad))

    def reset(self) -> None:
        """Starts a new sum (a new epoch); a recorded divergence is kept."""
        self._sum.zero_()
        self._count = 0
