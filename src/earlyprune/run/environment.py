"""What a run's numbers depend on besides its spec: threads, processes, device — and the
failures of the environment (as opposed to the run's own) that must never be stored as a result.

A run pins ``spec.threads`` intra-op threads for its whole duration and restores the caller's
count after, so ``earlyprune run``, a sweep's in-process run, a pool worker, a Ray task and a
torchrun rank compute the same numbers for one run id. ``spec.world_size`` must equal the number
of torchrun processes actually training it.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

import torch

from earlyprune.core.errors import RunInterrupted, SpecError  # noqa: F401  (re-exported)


class OutputClosed(RunInterrupted):
    """The reader of standard output went away (``earlyprune run ... | head -1``).

    Like the shell's SIGPIPE, it stops the command, but the run is left to resume (or its
    result to be served) next time, never stored as ``failed``; the CLI exits quietly with
    ``EXIT_OUTPUT_CLOSED``.
    """


#: Exit status when standard output was closed: 128 + SIGPIPE, as the shell reports a program
#: that SIGPIPE stopped (``yes | head -1``), so that ``set -o pipefail`` still sees it.
EXIT_OUTPUT_CLOSED = 141


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

    Out of memory (CPU or GPU), a pipe whose reader went away (stdout closed by ``| head``: the
    run's log lines, or a print in the user's code) and torch.distributed errors always are;
    under torchrun, so is a ``RuntimeError`` from the collective layer (gloo reports a rank that
    died as "Connection closed by peer", a timeout, or a broken pipe).
    """
    if isinstance(exc, RunInterrupted | MemoryError | torch.OutOfMemoryError | BrokenPipeError):
        return True
    dist_error = getattr(torch.distributed, "DistError", None)
    if dist_error is not None and isinstance(exc, dist_error):
        return True
    if distributed and isinstance(exc, RuntimeError):
        text = str(exc).lower()
        return any(word in text for word in _DIST_WORDS)
    return False


def output_closed(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) is standard output closed by its reader:
    an ``OutputClosed``, or a ``BrokenPipeError`` while stdout's reader is in fact gone (so a
    broken pipe of something else is still reported)."""
    seen: set[int] = set()
    found: BaseException | None = exc
    while found is not None and id(found) not in seen:
        seen.add(id(found))
        if isinstance(found, OutputClosed):
            return True
        if isinstance(found, BrokenPipeError) and _stdout_reader_gone():
            return True
        found = found.__cause__ or found.__context__
    return False


def _stdout_reader_gone() -> bool:
    # A pipe whose every reader has closed polls as an error (POLLERR) on its write end.
    import select

    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by an object without a descriptor
        return False
    if not hasattr(select, "poll"):
        return True  # no way to ask: a broken pipe here is most likely stdout's
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & select.POLLERR for _, events in poller.poll(0))


def silence_stdout() -> None:
    """Points standard output at the null device, so that the interpreter's last flush of what
    is still buffered does not fail again ("Exception ignored ... BrokenPipeError")."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)


def record(setup: Any) -> dict[str, Any]:
    """``result.json``'s ``environment``: what the numbers were computed with."""
    return {
        "threads": torch.get_num_threads(),
        "world_size": setup.job.world_size if setup.job is not None else 1,
        "device": str(setup.device),
    }
