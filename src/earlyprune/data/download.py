"""Fetching the official dataset files (only when the user asks with ``download=True``)."""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

from earlyprune.core.errors import DatasetError

__registers__ = ()  # helper: fetches and checks the official archives

TIMEOUT_S = 30.0  # per socket operation: with no network we fail in seconds, never hang


def fetch(urls: list[str], dest: Path, md5: str | None, timeout: float = TIMEOUT_S) -> Path:
    """Downloads the first of ``urls`` that answers to ``dest`` and checks its MD5.

    Args:
        urls: Mirrors of the same file, tried in order.
        dest: Where the file goes; written via a ``.part`` file so that a broken transfer never
            leaves a file that looks complete.
        md5: Expected MD5 hex digest of the official file, or None.
        timeout: Socket timeout in seconds.

    Raises:
        DatasetError: No mirror answered, or the file's checksum is wrong.
    """
    if dest.is_file() and (md5 is None or _md5(dest) == md5):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    problems = []
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, part.open("wb") as out:
                shutil.copyfileobj(response, out, 1 << 20)
        except (urllib.error.URLError, OSError, TimeoutError, ValueError) as exc:
            part.unlink(missing_ok=True)
            problems.append(f"{url}: {exc}")
            continue
        if md5 is not None and _md5(part) != md5:
            part.unlink(missing_ok=True)
            problems.append(f"{url}: checksum mismatch (expected MD5 {md5})")
            continue
        part.replace(dest)
        return dest
    raise DatasetError(
        f"could not download {dest.name}: {'; '.join(problems)}. Check the network connection, or "
        f"download the file by hand and place it at {dest}"
    )


def extract_tar(archive: Path, into: Path) -> None:
    """Unpacks a .tar.gz safely (no absolute paths or links leaving ``into``)."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(into, filter="data")
            else:  # Python < 3.11.4 has no extraction filters: vet the member names ourselves
                for member in tar.getmembers():
                    target = (into / member.name).resolve()
                    if (
                        not target.is_relative_to(into.resolve())
                        or member.issym()
                        or member.islnk()
                    ):
                        raise tarfile.TarError(f"unsafe member {member.name!r}")
                tar.extractall(into)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DatasetError(
            f"{archive}: cannot unpack the archive ({exc}); delete it and download again"
        ) from None


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
