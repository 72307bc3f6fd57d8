"""The run store: one folder per run id, atomic writes, claims for concurrent workers.

Layout: ``<root>/<run_id>/{spec.json, result.json, mask.pt, metrics.jsonl, latest.pt,
step_<t>.pt, final.pt, claim}``. Every file is written to a temporary name in the same folder
and renamed, so a crash leaves either the old file or the new one — never half of one.
Anything unreadable (truncated checkpoint, half JSON from another tool) is treated as absent
and set aside as ``*.corrupt`` so the work is redone.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import torch

from earlyprune.core.errors import StoreError
from earlyprune.run.claims import (  # noqa: F401  (re-exported: the store's own names)
    CLAIM_TTL_S,
    ClaimBusy,
    Claims,
)
from earlyprune.run.claims import reason as _reason

_RUN_ID = re.compile(r"^[0-9a-f]{12}$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class RunStore(Claims):
    """A folder of runs. Nothing is created until the first write.

    Args:
        root: The store folder (created on first write).
        read_only: Never change anything (``sweep status``, ``report``): unreadable files are
            treated as absent but not set aside.
    """

    def __init__(self, root: str | os.PathLike[str], *, read_only: bool = False) -> None:
        check_store_path(root)
        self.root = Path(root)
        self.read_only = read_only
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"store path {self.root} exists and is not a folder")

    @property
    def writes(self) -> bool:
        """Whether this process writes to the store (not read-only, not a torchrun rank > 0)."""
        return not self.read_only

    # ---- paths -------------------------------------------------------------------------------
    def run_dir(self, run_id: str) -> Path:
        if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
            raise StoreError(f"invalid run id {run_id!r} (expected 12 hex digits)")
        return self.root / run_id

    def path(self, run_id: str, name: str) -> Path:
        if not _NAME.match(name) or name.startswith("."):
            raise StoreError(f"invalid file name {name!r} in the store")
        return self.run_dir(run_id) / name

    def run_ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if _RUN_ID.match(p.name))

    # ---- atomic writes -----------------------------------------------------------------------
    def _atomic(self, target: Path, write: Any) -> None:
        if self.read_only:
            raise StoreError(f"cannot write {target}: the store was opened read-only")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
            try:
                write(tmp)
                os.replace(tmp, target)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
        except OSError as exc:
            raise StoreError(f"cannot write {target}: {_reason(exc)}") from None

    def write_json(self, run_id: str, name: str, obj: Any) -> None:
        text = json.dumps(obj, indent=1, sort_keys=False, allow_nan=True)

        def write(tmp: Path) -> None:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())

        self._atomic(self.path(run_id, name), write)

    def read_json(self, run_id: str, name: str) -> Any | None:
        p = self.path(run_id, name)
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, UnicodeDecodeError):
            self._set_aside(p)
            return None

    def save_tensors(self, run_id: str, name: str, obj: Any) -> None:
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                sink = _Sink(f)
                try:
                    torch.save(obj, sink)
                except RuntimeError:
                    # torch's zip writer turns a failed write (disk full) into an opaque
                    # RuntimeError ("unexpected pos ..."): report the OSError behind it.
                    if sink.error is not None:
                        raise sink.error from None
                    raise
                f.flush()
                os.fsync(f.fileno())

        self._atomic(self.path(run_id, name), write)

    def load_tensors(self, run_id: str, name: str) -> Any | None:
        """Loads with ``weights_only=True``; an unreadable file is set aside and None returned."""
        p = self.path(run_id, name)
        if not p.exists():
            return None
        try:
            return torch.load(p, map_location="cpu", weights_only=True)
        except Exception:  # truncated zip, bad pickle, refused global: never trust it
            self._set_aside(p)
            return None

    def delete(self, run_id: str, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(run_id, name).unlink()

    def _set_aside(self, p: Path) -> None:
        if self.read_only:
            return
        with contextlib.suppress(OSError):
            os.replace(p, p.with_name(p.name + ".corrupt"))

    # ---- results -----------------------------------------------------------------------------
    def read_result(self, run_id: str) -> dict[str, Any] | None:
        """The stored result, or None if absent or not a complete result record."""
        result = self.read_json(run_id, "result.json")
        if not isinstance(result, dict) or "status" not in result or "run_id" not in result:
            if result is not None:
                self._set_aside(self.path(run_id, "result.json"))
            return None
        return result

    def append_metrics(self, run_id: str, record: dict[str, Any]) -> None:
        """Appends one JSON line (a crash may cut the last line; readers skip it)."""
        p = self.path(run_id, "metrics.jsonl")
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            with open(p, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as exc:
            raise StoreError(f"cannot write {p}: {_reason(exc)}") from None


class _Sink:
    """A file for ``torch.save`` that remembers the ``OSError`` of a failed write."""

    def __init__(self, f: Any) -> None:
        self.f = f
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self.f.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.f.flush()


def check_store_path(root: str | os.PathLike[str]) -> None:
    """One clear ``StoreError`` for a store path that can never hold a store."""
    text = os.fspath(root)
    if not str(text).strip():
        raise StoreError("store path is empty; name a folder (default: runs/)")
    try:
        os.stat(text)
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StoreError(f"store path {text} is a symbolic link loop") from None
        if exc.errno == errno.ENAMETOOLONG:
            raise StoreError(
                f"store path is too long for the file system ({len(str(text))} "
                "characters, or a name over 255): choose a shorter one"
            ) from None
        if exc.errno != errno.ENOTDIR:
            raise StoreError(f"store path {text}: {_reason(exc)}") from None
    # A path that does not exist yet may still be too long to create.
    parts = Path(text).parts
    if any(len(part.encode()) > 255 for part in parts) or len(os.fsencode(text)) >= 4096:
        raise StoreError(
            f"store path is too long for the file system ({len(str(text))} "
            "characters, or a name over 255): choose a shorter one"
        )
