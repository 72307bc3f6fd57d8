"""When masks move and by how much: the update schedules of SET/RigL and of GMP.

Steps are counted as in the training loop: an update "at step t" happens in the iteration that
follows ``t`` completed optimizer steps (t = 0 is the first iteration), after its backward pass.
Every quantity is a pure function of the step and the resolved settings, so a checkpoint only
needs the mask to resume bit-identically.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: RigL's defaults (Evci et al. 2020; google-research/rigl): drop fraction α, update interval ΔT,
#: and the end of mask updates as a share of training.
DROP_FRACTION = 0.3
UPDATE_INTERVAL = 100
UPDATE_END_SHARE = 0.75
#: GMP starts pruning after this share of training (rigl's CIFAR "prune" baseline: 20k of 97.6k
#: steps; its end, 75k steps, is the same 75 % as above).
GMP_START_SHARE = 0.2
#: A run too short for UPDATE_INTERVAL (the demo preset has 72 steps) still gets this many
#: updates: the default interval shrinks to fit them, never below 1.
MIN_UPDATES = 10


@dataclass(frozen=True)
class UpdateSchedule:
    """Resolved update settings of one run (no None left).

    Attributes:
        start: First step with an update.
        end: Last step with an update (RigL's T_end; GMP's t₀ + nΔt).
        interval: Steps between updates (ΔT, Δt).
        drop_fraction: α of SET/RigL (cosine-decayed from ``start`` to ``end``).
        initial_sparsity: GMP's s_i.
        final_sparsity: The run's sparsity (GMP's s_f).
        scope: GMP's removal: "global" (one threshold) or "layer" (s_t in every layer).
    """

    start: int
    end: int
    interval: int
    drop_fraction: float = DROP_FRACTION
    initial_sparsity: float = 0.0
    final_sparsity: float = 0.0
    scope: str = "global"

    def is_update(self, step: int) -> bool:
        """Whether the mask is updated at ``step``: start, start + ΔT, ... up to ``end``.

        The step ``end`` itself is always an update step (GMP lands exactly on s_f there; for
        SET/RigL the cosine drop fraction is 0 at ``end``, so nothing moves).
        """
        if step < self.start or step > self.end:
            return False
        return (step - self.start) % self.interval == 0 or step == self.end

    def drop_fraction_at(self, step: int) -> float:
        """α/2 · (1 + cos(π (t − start) / (end − start))): α at the start, 0 at the end."""
        span = self.end - self.start
        if span <= 0:
            return self.drop_fraction
        progress = min(max((step - self.start) / span, 0.0), 1.0)
        return self.drop_fraction / 2 * (1 + math.cos(math.pi * progress))

    def sparsity_at(self, step: int) -> float:
        """Zhu & Gupta's cubic schedule s_f + (s_i − s_f)(1 − (t − t₀)/(nΔt))³, clamped."""
        span = self.end - self.start
        progress = 1.0 if span <= 0 else min(max((step - self.start) / span, 0.0), 1.0)
        s_i, s_f = self.initial_sparsity, self.final_sparsity
        return s_f + (s_i - s_f) * (1 - progress) ** 3


def default_interval(start: int, end: int) -> int:
    """ΔT = 100, shrunk so that at least ``MIN_UPDATES`` updates fit between start and end."""
    return max(1, min(UPDATE_INTERVAL, (end - start) // MIN_UPDATES))
