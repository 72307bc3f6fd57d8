"""A closed standard output (``earlyprune run ... | head -1``) is the environment, not the run.

Each test starts the real command with its stdout on a pipe and closes the pipe early, as
``head`` does: the command stops quietly (exit 141, as SIGPIPE would; no traceback), nothing is
stored as ``failed``, and the run resumes (or is served) next time.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from earlyprune import cli
from earlyprune.run.environment import EXIT_OUTPUT_CLOSED, OutputClosed, is_environmental
from earlyprune.run.logs import Log
from earlyprune.run.store import RunStore

CLI = [sys.executable, "-m", "earlyprune.cli"]
RUN = [
    "run",
    "--dataset",
    "fashion-mnist-mini",
    "--method",
    "snip",
    "--sparsity",
    "0.5",
    "--epochs",
    "0.25",
    "--device",
    "cpu",
]


def closed_after(argv: list[str], lines: int) -> tuple[int, str, list[str]]:
    """Runs the command, reads ``lines`` lines of its stdout, closes the pipe; returns the exit
    status, its stderr and the lines read."""
    proc = subprocess.Popen(
        [*CLI, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stderr is not None
    read = [proc.stdout.readline() for _ in range(lines)]
    proc.stdout.close()
    err = proc.stderr.read()
    return proc.wait(timeout=300), err, read


@pytest.mark.slow
def test_run_piped_into_head_stops_quietly_and_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store"
    argv = [*RUN, "--store", str(store)]
    # The first line is the start line; the next (an epoch line) finds the pipe closed.
    code, err, (first,) = closed_after(argv, 1)
    assert first.startswith("run ") and (code, err) == (EXIT_OUTPUT_CLOSED, "")
    results = list(store.glob("*/result.json"))
    assert results == []  # not stored as failed: left to resume
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and "status=" not in out
    (rid,) = [p.name for p in store.iterdir()]
    assert RunStore(store).read_result(rid)["status"] == "ok"
    # Served from the store next time; a closed pipe then changes nothing either.
    code, err, _ = closed_after(argv, 0)
    assert (code, err) == (EXIT_OUTPUT_CLOSED, "")
    assert RunStore(store).read_result(rid)["status"] == "ok"


def test_list_into_a_closed_pipe_exits_quietly() -> None:
    # `list` writes at exit (block-buffered on a pipe): the reader is gone by then.
    code, err, _ = closed_after(["list"], 0)
    assert (code, err) == (EXIT_OUTPUT_CLOSED, "")


def test_sweep_plan_piped_into_head_stops_quietly(tmp_path: Path) -> None:
    # More plan lines than a pipe holds (64 KiB), so the writer meets the closed pipe.
    toml = tmp_path / "big.toml"
    toml.write_text(
        '[base]\ndataset = "fashion-mnist-mini"\nmethod = "snip"\nsparsity = 0.5\n'
        f"[axes]\nseed = {list(range(1500))}\n[options]\ndense = false\n"
    )
    code, err, (first,) = closed_after(["sweep", "plan", str(toml), "--store", str(tmp_path)], 1)
    assert "snip" in first and first.rstrip().endswith("pending")
    assert (code, err) == (EXIT_OUTPUT_CLOSED, "")


def test_a_closed_log_stream_is_an_environment_failure() -> None:
    class Closed:
        def write(self, _text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self) -> None:
            pass

    with pytest.raises(OutputClosed) as raised:
        Log(stream=Closed()).say("line", "start")  # type: ignore[arg-type]
    assert is_environmental(raised.value, False)
    assert is_environmental(BrokenPipeError(), False)  # e.g. a print in the user's own code
