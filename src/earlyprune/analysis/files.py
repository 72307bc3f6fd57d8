"""Atomic file writes: a report folder never holds a half-written file, even after a crash."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

# mkstemp creates files readable by their owner only; a report is meant to be shared.
_MODE = 0o644


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> Path:
    """Calls ``write`` on a temporary file in ``path``'s folder, then renames it to ``path``."""
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
        os.chmod(tmp, _MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    """Writes ``text`` as UTF-8 with ``\\n`` line endings, atomically."""
    return atomic_write(path, lambda stream: stream.write(text.encode("utf-8")))
