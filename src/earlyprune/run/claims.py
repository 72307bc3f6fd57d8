"""Claims: an exclusive, heartbeat-refreshed lock file per run, so that workers of one sweep or
of several never run the same spec at once, and a killed worker's runs are taken over.

A mixin of ``RunStore`` (``earlyprune.run.store``), which provides ``path``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from earlyprune.core.errors import StoreError
from earlyprune.core.processes import pid_alive, pid_namespace, process_start

#: A claim whose heartbeat is older than this is considered abandoned by a dead worker.
CLAIM_TTL_S = 120.0


class ClaimBusy(Exception):
    """Another live worker holds the claim on a run."""


class Claims:
    """The claim methods of a store; ``path(run_id, name)`` is the store's."""

    def path(self, run_id: str, name: str) -> Path:
        raise NotImplementedError

    @contextlib.contextmanager
    def claim(self, run_id: str, *, wait: bool = True, poll_s: float = 0.5) -> Iterator[None]:
        """Holds an exclusive claim on a run (an O_EXCL lock file with pid, host and heartbeat).

        A claim from a dead process on this host, or (from another host) whose heartbeat is
        older than ``CLAIM_TTL_S``, is broken. While held, a background thread refreshes the
        heartbeat every ``CLAIM_TTL_S / 4`` — an epoch may take longer than the TTL (VGG-16 on a
        CPU), and a live run must never be taken for abandoned. With ``wait=False`` a live claim
        raises ``ClaimBusy``.
        """
        p = self.path(run_id, "claim")
        while not self._try_claim(p):
            if not wait:
                raise ClaimBusy(run_id)
            time.sleep(poll_s)
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(CLAIM_TTL_S / 4):
                with contextlib.suppress(OSError):
                    os.utime(p)

        threading.Thread(target=beat, name=f"claim-{run_id}", daemon=True).start()
        try:
            yield
        finally:
            stop.set()
            with contextlib.suppress(FileNotFoundError):
                p.unlink()

    def heartbeat(self, run_id: str) -> None:
        """Refreshes the claim's time so that long runs are not mistaken for dead ones."""
        with contextlib.suppress(OSError):
            os.utime(self.path(run_id, "claim"))

    def claim_state(self, run_id: str) -> str:
        """ "free", "live" or "stale" (held by a dead or silent worker)."""
        p = self.path(run_id, "claim")
        if not p.exists():
            return "free"
        return "stale" if self._stale(p) else "live"

    def _try_claim(self, p: Path) -> bool:
        # Two attempts: a stale claim that is broken is taken at once (with ``wait=False`` a
        # single attempt would report the dead worker's claim as busy).
        for _attempt in range(2):
            try:
                p.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not self._break_if_stale(p):
                    return False
                continue
            except OSError as exc:
                raise StoreError(f"cannot write {p}: {reason(exc)}") from None
            info = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "time": time.time(),
                "start": process_start(os.getpid()),
                "pidns": pid_namespace(),
            }
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(info, f)
            except OSError as exc:  # disk full: an empty claim would block the run for a while
                with contextlib.suppress(OSError):
                    p.unlink()
                raise StoreError(f"cannot write {p}: {reason(exc)}") from None
            return True
        return False

    def _break_if_stale(self, p: Path) -> bool:
        """Removes a stale claim; True if the claim is gone (by us or by another breaker)."""
        try:
            judged = p.read_bytes()
        except FileNotFoundError:
            return True
        if not self._stale(p):
            return False
        # Move it aside, then check that what we moved is the claim we judged stale: between
        # our check and the rename another breaker may have replaced it with its own live claim,
        # which must then be put back, not deleted.
        broken = p.with_name(f".claim.broken.{os.getpid()}.{time.monotonic_ns()}")
        try:
            os.replace(p, broken)
        except FileNotFoundError:
            return True
        try:
            if broken.read_bytes() != judged:
                with contextlib.suppress(FileExistsError):
                    os.link(broken, p)
                return False
            return True
        finally:
            with contextlib.suppress(FileNotFoundError):
                broken.unlink()

    def _stale(self, p: Path) -> bool:
        try:
            info = json.loads(p.read_text())
            age = time.time() - p.stat().st_mtime
        except (OSError, json.JSONDecodeError):
            try:  # a claim being written right now is younger than a second
                return time.time() - p.stat().st_mtime > 5.0
            except OSError:
                return False
        # On this host (and in this PID namespace: containers with host networking share the
        # host name, not the pids) we can ask the process itself.
        here = pid_namespace()
        if info.get("host") == socket.gethostname() and info.get("pidns", here) == here:
            pid = int(info.get("pid", -1))
            # A restarted container reuses pids (same host name): a live process with the
            # owner's pid but another start time is not the owner.
            reused = info.get("start") is not None and info.get("start") != process_start(pid)
            return reused or not pid_alive(pid)
        return age > CLAIM_TTL_S


def reason(exc: OSError) -> str:
    """A short phrase for an ``OSError`` (disk full, permission denied...)."""
    return {
        errno.ENOSPC: "disk full",
        errno.EACCES: "permission denied",
        errno.EROFS: "read-only file system",
    }.get(exc.errno, exc.strerror or str(exc))
