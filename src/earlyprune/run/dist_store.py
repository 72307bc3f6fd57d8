"""The store of a torchrun job: only rank 0 writes, and every write ends with a barrier.

It lives in the run layer (a ``RunStore``); the job itself is :mod:`earlyprune.train.distributed`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from earlyprune.run.store import RunStore
from earlyprune.train.distributed import Distributed


class DistStore(RunStore):
    """A store that only rank 0 writes to; every write is followed by a barrier on all ranks."""

    def __init__(self, root: str | os.PathLike[str], job: Distributed) -> None:
        super().__init__(root)
        self.job = job

    @property
    def writes(self) -> bool:
        return self.job.is_main

    def _synced(self, write: Any, *args: Any) -> None:
        # A barrier before the write too: rank 0 writes only once every rank has reached this
        # write, so no rank can read the new file while deciding what to do before it (a rank
        # that saw it early would skip a write the others make, and the barriers would pair up
        # wrongly: a deadlock).
        self.job.barrier()
        if self.job.is_main:
            write(*args)
        self.job.barrier()

    def write_json(self, run_id: str, name: str, obj: Any) -> None:
        self._synced(super().write_json, run_id, name, obj)

    def save_tensors(self, run_id: str, name: str, obj: Any) -> None:
        self._synced(super().save_tensors, run_id, name, obj)

    def append_metrics(self, run_id: str, record: dict[str, Any]) -> None:
        self._synced(super().append_metrics, run_id, record)

    def delete(self, run_id: str, name: str) -> None:
        self._synced(super().delete, run_id, name)

    def heartbeat(self, run_id: str) -> None:
        if self.job.is_main:
            super().heartbeat(run_id)

    @contextlib.contextmanager
    def claim(self, run_id: str, *, wait: bool = True, poll_s: float = 0.5) -> Iterator[None]:
        if self.job.is_main:
            with super().claim(run_id, wait=wait, poll_s=poll_s):
                self.job.barrier()
                yield
        else:
            self.job.barrier()
            yield
