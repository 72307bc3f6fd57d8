"""Logs with stdout redirected (as on a cluster): a line per epoch, a line per finished sweep run.

One test runs the console script with stdout a real file; the others run ``cli.main`` in-process
(pytest's captured stdout is not a terminal either). Runs are a fraction of the demo preset.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from earlyprune import cli
from earlyprune.run.hparams import HPARAMS
from earlyprune.run.spec import PRESETS, RunSpec

# Batches of 512: 6 steps an epoch on the demo's 3,000 images (cheap, yet several epochs).
QUICK = ["--dataset", "fashion-mnist-mini", "--device", "cpu", "--batch-size", "512"]
EPOCH = re.compile(
    r"^[0-9a-f]{12} (snip 90\.0 %|dense|ltr 90\.0 %)\S*.*  epoch (\d+)/(\d+)  step (\d+)/(\d+)"
    r"  loss \d+\.\d{4}  test \d+\.\d\d %  \d+\.\d s$"
)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def call(argv, capsys):
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_console_script_writes_one_line_per_epoch_to_a_file(tmp_path):
    log = tmp_path / "job.out"
    env = {**os.environ, "PYTHONPATH": str(Path(cli.__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    argv = [
        sys.executable,
        "-m",
        "earlyprune.cli",
        "run",
        *QUICK,
        "--method",
        "snip",
        "--sparsity",
        "0.9",
        "--epochs",
        "2",
        "--store",
        str(tmp_path / "runs"),
    ]
    with log.open("w") as out:
        done = subprocess.run(argv, stdout=out, stderr=subprocess.PIPE, env=env, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    lines = log.read_text().splitlines()
    rid = RunSpec(method="snip", sparsity=0.9, epochs=2, batch_size=512).run_id
    assert lines[0].startswith(f"run {rid} → ") and lines[-1].startswith(f"{rid}  smallcnn")
    epochs = [EPOCH.match(line) for line in lines[1:-1]]
    assert len(epochs) == 2 and all(epochs), lines
    assert [m.group(2, 3) for m in epochs] == [("1", "2"), ("2", "2")]
    assert epochs[-1].group(4) == epochs[-1].group(5) == "12"  # 2 epochs × 6 steps
    assert done.stderr == b""  # no progress bar off a terminal


def test_json_lines_cover_the_dense_run_too_and_quiet_drops_them(tmp_path, capsys):
    argv = [
        "run",
        *QUICK,
        "--method",
        "ltr",
        "--sparsity",
        "0.9",
        "--epochs",
        "1",
        "--rewind-step",
        "3",
        "--store",
        str(tmp_path),
        "--log-format",
        "json",
    ]
    code, out, err = call(argv, capsys)
    assert code == 0 and err == ""
    events = [json.loads(line) for line in out.splitlines()]  # every line is one JSON object
    assert [e["event"] for e in events] == ["start", "epoch", "epoch", "result"]
    dense, ltr = events[1], events[2]
    spec = RunSpec(method="ltr", sparsity=0.9, epochs=1, rewind_step=3, batch_size=512)
    assert (dense["run_id"], dense["method"]) == (spec.dense_spec().run_id, "dense")
    assert (ltr["run_id"], ltr["step"], ltr["total_steps"]) == (spec.run_id, 6, 6)
    assert events[-1]["status"] == "ok" and 0 < events[-1]["test_accuracy"] <= 1
    assert events[-1]["spec"]["rewind_step"] == 3
    argv = [
        "run",
        *QUICK,
        "--method",
        "snip",
        "--sparsity",
        "0.5",
        "--epochs",
        "0.5",
        "--store",
        str(tmp_path),
        "--quiet",
    ]
    code, out, err = call(argv, capsys)
    assert code == 0 and len(out.splitlines()) == 2 and "epoch" not in out


def test_sweep_writes_one_line_per_finished_run(tmp_path, capsys):
    sweep = tmp_path / "s.toml"
    sweep.write_text(
        '[base]\ndataset = "fashion-mnist-mini"\nepochs = 0.5\ndevice = "cpu"\nbatch_size = 512\n'
        '[axes]\nmethod = ["snip", "random"]\nsparsity = [0.9]\n'
    )
    argv = ["sweep", "run", str(sweep), "--store", str(tmp_path / "runs"), "--workers", "1"]
    code, out, err = call(argv, capsys)
    assert code == 0
    lines = out.splitlines()
    runs = [line for line in lines if line.startswith("[")]
    pattern = (
        r"^\[(\d)/3\] [0-9a-f]{12} (dense|snip 90\.0 %|random 90\.0 %) batch_size=512 seed 0: "
    )
    pattern += r"\d+\.\d\d % in \d+\.\d s$"
    matches = [re.match(pattern, line) for line in runs]
    assert len(runs) == 3 and all(matches), lines
    assert [m.group(1) for m in matches] == ["1", "2", "3"]
    assert matches[0].group(2) == "dense"  # the dense reference runs first
    assert lines[-1].startswith("3 runs") and "3 done" in lines[-1]
    # Again, as JSON: nothing left to run, so only the summary (one object).
    code, out, _ = call([*argv, "--log-format", "json"], capsys)
    (summary,) = [json.loads(line) for line in out.splitlines()]
    assert (summary["event"], summary["done"], summary["pending"]) == ("status", 3, 0)


def test_version_help_and_presets(capsys):
    code, out, _ = call(["--version"], capsys)
    assert code == 0 and re.match(r"earlyprune \d+\.\d+\.\d+ \(torch .*, python .*\)", out)
    code, out, _ = call(["run", "--help"], capsys)
    flags = [f"--{h.replace('_', '-')}" for h in HPARAMS]
    assert code == 0 and all(f in out for f in flags)
    text = " ".join(out.split())  # argparse wraps lines
    assert all(d in text for d in ("(default: preset)", "(default: fp32)", "(default: 0)"))
    code, out, _ = call(["list", "presets"], capsys)
    assert code == 0 and "models:" not in out
    for name in PRESETS.names():
        block = out.split(f"  {name}\n", 1)[1].splitlines()[0]
        assert all(f"{h}=" in block for h in HPARAMS), block
    assert "optimizer=sgd  nesterov=False  warmup_epochs=0.0  label_smoothing=0.0" in out


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--lr", "-1"], "lr must be a number > 0"),
        (["--batch-size", "0"], "batch_size must be an integer ≥ 1"),
        (["--optimizer", "sgdd"], "unknown optimizer 'sgdd'"),
        (["--milestones", "1,9"], "milestone(s) 9 beyond training (2 epochs)"),
        (["--milestones", "1,x"], "milestones must be epochs separated by commas"),
        (["--rewind-step", "3"], "rewind_step applies to ltr"),
    ],
)
def test_bad_hyperparameters_are_one_line_and_exit_2(tmp_path, capsys, flags, needle):
    argv = [
        "run",
        *QUICK,
        "--method",
        "snip",
        "--sparsity",
        "0.9",
        "--epochs",
        "2",
        "--store",
        str(tmp_path / "runs"),
        *flags,
    ]
    code, out, err = call(argv, capsys)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert needle in err
    assert not (tmp_path / "runs").exists()


def test_tensorboard_event_files_or_one_line_without_the_package(tmp_path, capsys):
    argv = [
        "run",
        *QUICK,
        "--method",
        "dense",
        "--sparsity",
        "0",
        "--epochs",
        "2",
        "--store",
        str(tmp_path / "runs"),
        "--tensorboard",
        str(tmp_path / "tb"),
    ]
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        code, out, err = call(argv, capsys)
        assert code == 2 and "pip install 'earlyprune[tensorboard]'" in err
        assert not (tmp_path / "runs").exists()
        pytest.skip("tensorboard is not installed: only the message was checked")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    code, _, _ = call(argv, capsys)
    assert code == 0
    rid = RunSpec(epochs=2, batch_size=512).run_id
    events = EventAccumulator(str(tmp_path / "tb" / rid))
    events.Reload()
    steps = [e.step for e in events.Scalars("test_accuracy")]
    assert steps == [6, 12]
