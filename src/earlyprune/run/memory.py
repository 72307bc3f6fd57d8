"""Out-of-memory errors that repeat: counted per run and stage, stored ``failed`` at the third.

An out-of-memory error is usually the machine's state (another process held the GPU), so a run
that hits one is left to resume, as any environment failure. But one that recurs at the same
stage on every attempt is the run's own: retrying it would wedge a sweep forever. The store
counts them per run and stage in ``oom.json`` (written atomically); the third at one stage is
stored as the run's ``failed`` result, naming memory and the flag that helps.
"""

from __future__ import annotations

import traceback

import torch

from earlyprune.run.store import RunStore

#: The run-folder file that counts out-of-memory errors per stage.
OOM_FILE = "oom.json"
#: Attempts that may run out of memory at one stage; the last is stored as failed.
ATTEMPTS = 3
#: What to try, per stage.
REMEDY = {
    "scoring": "score in chunks with --scoring-micro-batch k",
    "training": "train each batch in micro-batches (--accumulate k; the same batches) or use a "
    "smaller --batch-size, or fewer runs per GPU (--workers-per-gpu)",
    "evaluation": "use a smaller --batch-size, or fewer runs per GPU (--workers-per-gpu)",
    "loading data": "free host memory for the dataset, or run fewer runs at once (--workers)",
    "the run": "free memory for it, or run fewer runs at once (--workers, --workers-per-gpu)",
}
# Deepest earlyprune frame first: its package says which stage ran out of memory.
_STAGES = (
    ("/earlyprune/train/evaluate", "evaluation"),
    ("/earlyprune/train/", "training"),
    ("/earlyprune/methods/", "scoring"),
    ("/earlyprune/masks/", "scoring"),
    ("/earlyprune/data/", "loading data"),
)


class RepeatedOutOfMemory(RuntimeError):
    """The same stage of a run ran out of memory on ``ATTEMPTS`` attempts."""


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is the host's or a GPU's out-of-memory error."""
    return isinstance(exc, MemoryError | torch.OutOfMemoryError)


def stage_of(exc: BaseException) -> str:
    """``scoring``, ``training``, ``evaluation`` or ``loading data``: where ``exc`` was raised
    (else ``the run``)."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        path = frame.filename.replace("\\", "/")
        for part, stage in _STAGES:
            if part in path:
                return stage
    return "the run"


def counted(store: RunStore, run_id: str, exc: BaseException) -> RepeatedOutOfMemory | None:
    """Counts ``exc`` against its stage; at the ``ATTEMPTS``-th, the error to store (the count
    is then cleared, so that ``--retry-failed`` gets as many attempts again)."""
    stage = stage_of(exc)
    counts = store.read_json(run_id, OOM_FILE) or {}
    counts[stage] = int(counts.get(stage, 0)) + 1
    if counts[stage] < ATTEMPTS:
        if store.writes:
            store.write_json(run_id, OOM_FILE, counts)
        return None
    if store.writes:
        store.delete(run_id, OOM_FILE)
    lines = str(exc).splitlines()
    last = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    error = RepeatedOutOfMemory(
        f"out of memory in {stage} on {ATTEMPTS} attempts ({last}); {REMEDY[stage]}"
    )
    return error.with_traceback(exc.__traceback__)
