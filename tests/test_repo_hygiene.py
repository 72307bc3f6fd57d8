"""The repository tracks no stray run folder (a spec.json/result.json committed by accident)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUN_FILES = {"spec.json", "result.json"}
# Test data may hold small stored runs on purpose; nothing else may.
TEST_DATA_ROOTS = ("tests/",)


def tracked_files() -> list[str]:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    proc = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=False
    )
    if proc.returncode != 0:
        pytest.skip("not a git checkout")
    return [p for p in proc.stdout.decode("utf-8").split("\0") if p]


def stray_run_files(paths: list[str]) -> list[str]:
    """The run files in ``paths`` that lie outside the test-data folders."""
    return sorted(
        p for p in paths if p.rsplit("/", 1)[-1] in RUN_FILES and not p.startswith(TEST_DATA_ROOTS)
    )


def test_stray_run_files_are_recognised():
    paths = [
        "86b7ed5a44cc/spec.json",
        "86b7ed5a44cc/result.json",
        "tests/data/r/spec.json",
        "src/earlyprune/spec.py",
        "docs/result.json.md",
    ]
    assert stray_run_files(paths) == ["86b7ed5a44cc/result.json", "86b7ed5a44cc/spec.json"]


def test_no_run_folder_is_tracked():
    stray = stray_run_files(tracked_files())
    assert not stray, f"run files tracked outside test data (git rm them): {stray}"
