"""Opt-in speed and memory modes of one training run: torch.compile, cuDNN autotuning and
gradient accumulation.

Each changes the numbers a run computes, so each is a ``RunSpec`` field in the run id when set
(``compile``, ``autotune``, ``accumulate``); ``Modes.of(spec)`` carries them to ``train``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Modes:
    """How ``train`` computes a step (the defaults: as it always has)."""

    compile: bool = False  # torch.compile the network for training and evaluation
    autotune: bool = False  # CUDA: cuDNN autotuning, nondeterministic kernels allowed
    accumulate: int = 1  # micro-batches per optimizer step, gradients summed

    @classmethod
    def of(cls, spec: Any) -> Modes:
        """The modes a run spec asks for (any object with those attributes)."""
        return cls(spec.compile, spec.autotune, spec.accumulate)
