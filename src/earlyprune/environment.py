"""What a run's numbers depend on besides its spec: threads, processes, device — and the
failures of the environment (as opposed to the run's own) that must never be stored as a result.

A run pins ``spec.threads`` intra-op threads for its whole duration and restores the caller's
count after, so ``earlyprune run``, a sweep's in-process run, a pool worker, a Ray task and a
torchrun rank compute the same numbers for one run id. ``spec.world_size`` must equal the number
of torchrun processes actually training it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from earlyprune.errors import SpecError


class RunInterrupted(RuntimeError):
    """The environment, not the run, stopped it (out of memory, a lost torchrun peer).

    The run is left resumable (its checkpoints stay, no ``failed`` result is stored); running
    the same command again resumes it.
    """


#: What gloo/NCCL errors say when a peer process died or stopped answering.
_DIST_WORDS = ("gloo", "nccl", "peer", "connection", "broken pipe", "timed out", "timeout")


@contextlib.contextmanager
def pinned_threads(threads: int) -> Iterator[None]:
    """``torch.set_num_threads(threads)`` inside, the caller's count restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def check_world_size(spec: Any, processes: int) -> None:
    """Refuses a spec launched on another number of torchrun processes than its ``world_size``."""
    if spec.world_size != processes:
        raise SpecError(
            f"run {spec.run_id} is specified for world_size={spec.world_size} but launched on "
            f"{processes} process(es); `earlyprune run` under torchrun sets it from WORLD_SIZE"
        )


def is_environmental(exc: BaseException, distributed: bool) -> bool:
    """Whether ``exc`` is the environment's failure rather than the run's own.

    Out of memory (CPU or GPU) and torch.distributed errors always are; under torchrun, so is a
    ``RuntimeError`` from the collective layer (gloo reports a rank that died as "Connection
    closed by peer", a timeout, or a broken pipe).
    """
    if isinstance(exc, RunInterrupted | MemoryError | torch.OutOfMemoryError):
        return True
    dist_error = getattr(torch.distributed, "DistError", None)
    if dist_error is not None and isinstance(exc, dist_error):
        return True
    if distributed and isinstance(exc, RuntimeError):
        text = str(exc).lower()
        return any(word in text for word in _DIST_WORDS)
    return False


def record(setup: Any) -> dict[str, Any]:
    """``result.json``'s ``environment``: what the numbers were computed with."""
    return {
        "threads": torch.get_num_threads(),
        "world_size": setup.job.world_size if setup.job is not None else 1,
        "device": str(setup.device),
    }
