"""Opt-in speed and memory modes of one training run: torch.compile, cuDNN autotuning and
gradient accumulation.

Each changes the numbers a run computes, so each is a ``RunSpec`` field in the run id when set
(``compile``, ``autotune``, ``accumulate``); ``Modes.of(spec)`` carries them to ``train``.

**compile**: the loop trains and evaluates through ``torch.compile(model)``, a wrapper sharing
the model's parameters and buffers; checkpoints keep saving the plain model (its state_dict keys,
no ``_orig_mod.``), and a resumed run builds a new wrapper. Masks stay outside the graph:
``keep_pruned`` edits the parameters in place after each optimizer step, as without compile.
Shapes are static (``dynamic=False``): the short last batch of an epoch and the test batches
each compile once more (as do BatchNorm's eval mode and ``no_grad``) instead of one graph with
symbolic sizes whose kernels would differ from the full batch's. Each compiled ``train`` call
starts from empty compile caches, so a sweep's runs in one process never pile graphs up to
dynamo's recompile limit; reaching it within a run raises instead of falling back to eager
(which would compute numbers the run id does not describe). A backend that cannot build kernels
here (no C++ compiler on CPU, no Triton on CUDA) is the machine's failure, not the run's:
``CompileFailed``, a ``RunInterrupted``, so nothing is stored and the checkpoints stay.

**autotune**: ``deterministic(..., autotune=True)``: on CUDA cuDNN benchmarks its algorithms and
nondeterministic kernels are allowed, so re-runs and resumes differ in the last bits.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from earlyprune.core.device_identity import deterministic
from earlyprune.core.errors import RunInterrupted


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


class CompileFailed(RunInterrupted):
    """torch.compile could not build kernels on this machine (its failure, not the run's)."""


def compiled(net: nn.Module, modes: Modes) -> nn.Module:
    """``net`` itself, or with ``modes.compile`` a fresh ``torch.compile`` wrapper calling it.

    Raises:
        ValueError: ``net`` is a DistributedDataParallel wrapper (compile is single-process).
    """
    if not modes.compile:
        return net
    if isinstance(net, nn.parallel.DistributedDataParallel):
        raise ValueError("compile is not supported under torchrun: train without --compile")
    torch.compiler.reset()  # this run's graphs only (see the module's docstring)
    return torch.compile(net, dynamic=False)


@contextlib.contextmanager
def numerics(device: torch.device, precision: str, modes: Modes) -> Iterator[None]:
    """The numeric settings of a training block: ``deterministic`` (with ``modes.autotune``),
    and under compile no silent eager fallback and build failures as ``CompileFailed``."""
    with deterministic(device, precision, autotune=modes.autotune):
        if not modes.compile:
            yield
            return
        with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
            try:
                yield
            except torch._dynamo.exc.BackendCompilerFailed as exc:
                raise CompileFailed(
                    f"torch.compile could not build kernels on this machine ({_reason(exc)}): "
                    "check its toolchain (a C++ compiler on CPU, Triton on CUDA), or run "
                    "without --compile"
                ) from exc


def _reason(exc: BaseException) -> str:
    """The first line that says what went wrong (dynamo's own first line only names the backend)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("backend=")] or [type(exc).__name__]
    return lines[0]
