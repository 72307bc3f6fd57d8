"""Size and SHA-256 of every file a finished run wrote, so damage is found, not trained on.

``result.json`` carries ``artifacts``: file name → ``{"size", "sha256"}`` for every file in the
run's folder when the result was written (``final.pt``, ``mask.pt``, ``metrics.jsonl``,
``spec.json``, kept ``step_<t>.pt``). A finished run is *damaged* when one of them is missing or
differs. Damaged runs are never served (``pipeline.run`` and ``sweep run`` redo them);
``earlyprune verify STORE`` lists them and ``--repair`` re-queues them.

Plain Python (hashlib, json, os): verifying a store imports no torch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_RUN_ID = re.compile(r"^[0-9a-f]{12}$")
#: Files of a run folder that are not artifacts of its result: the record itself, the claim
#: (transient), the resume checkpoint (deleted when the run finishes), a stale result kept for
#: the record (``numerics.STALE_RESULT``).
NOT_ARTIFACTS = frozenset({"result.json", "claim", "latest.pt", "result.stale.json"})
_CHUNK = 1 << 20


def digest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``{"size": bytes, "sha256": hex}`` of one file."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return {"size": size, "sha256": h.hexdigest()}


def _is_artifact(p: Path) -> bool:
    name = p.name
    return (
        p.is_file()
        and name not in NOT_ARTIFACTS
        and not name.startswith(".")
        and not name.endswith(".corrupt")
    )


def artifacts(folder: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Digests of every artifact in a run folder (sorted by name)."""
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    return {p.name: digest(p) for p in sorted(folder.iterdir()) if _is_artifact(p)}


def damage(folder: str | os.PathLike[str], result: dict[str, Any]) -> dict[str, str]:
    """Damaged artifacts of a stored result: file name → what is wrong (empty: intact).

    A result written before artifacts were recorded has nothing to compare with: intact.
    """
    folder = Path(folder)
    found: dict[str, str] = {}
    recorded = result.get("artifacts")
    if not isinstance(recorded, dict):
        return found
    for name, want in recorded.items():
        if not isinstance(want, dict) or "/" in str(name) or str(name).startswith("."):
            found[str(name)] = "unreadable artifact record"
            continue
        p = folder / name
        try:
            have = digest(p)
        except FileNotFoundError:
            found[name] = "missing"
            continue
        except OSError as exc:
            found[name] = f"unreadable ({exc.strerror or exc})"
            continue
        if have["size"] != want.get("size"):
            found[name] = f"{have['size']} bytes, expected {want.get('size')}"
        elif have["sha256"] != want.get("sha256"):
            found[name] = "content differs from its recorded sha256"
    return found


def read_result(folder: Path) -> dict[str, Any] | None:
    """A run folder's ``result.json`` without setting anything aside (None if absent/unreadable)."""
    try:
        result = json.loads((folder / "result.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return result if isinstance(result, dict) and "status" in result else None


def verify_store(root: str | os.PathLike[str]) -> tuple[int, dict[str, dict[str, str]], int]:
    """(finished runs checked, damaged run id → damage, finished runs without artifact records)."""
    root = Path(root)
    checked, unverified, damaged = 0, 0, {}
    if not root.is_dir():
        return checked, damaged, unverified
    for folder in sorted(p for p in root.iterdir() if _RUN_ID.match(p.name) and p.is_dir()):
        if not (folder / "result.json").exists():
            continue  # pending or running: nothing finished to verify
        checked += 1
        result = read_result(folder)
        if result is None:
            damaged[folder.name] = {"result.json": "unreadable"}
            continue
        if not isinstance(result.get("artifacts"), dict):
            unverified += 1
            continue
        found = damage(folder, result)
        if found:
            damaged[folder.name] = found
    return checked, damaged, unverified


def requeue(folder: str | os.PathLike[str], damaged: dict[str, str]) -> None:
    """Sets the result and the damaged files aside (``*.corrupt``) so the run is done again.

    ``metrics.jsonl`` goes too: the run is redone from step 0 and writes its own.

    Callers hold the run's claim (``pipeline.run``) or accept the race (``verify --repair`` on
    a store no sweep is writing to).
    """
    set_aside(folder, ["result.json", "metrics.jsonl", *damaged])


def set_aside(folder: str | os.PathLike[str], names: Iterable[str]) -> None:
    """Renames each file ``name`` of the folder to ``name.corrupt`` (absent ones are skipped)."""
    folder = Path(folder)
    for name in dict.fromkeys(names):
        if name.startswith(".") or "/" in name:
            continue
        p = folder / name
        with contextlib.suppress(FileNotFoundError):
            os.replace(p, p.with_name(p.name + ".corrupt"))
