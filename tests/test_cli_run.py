"""`earlyprune run` and `earlyprune list`: output, stored results, and one-line user mistakes.

Commands run in-process through ``cli.main``; one test runs the installed console script to
prove the entry point works. Runs are a quarter epoch of the demo preset (a dozen SGD steps).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from earlyprune import cli
from earlyprune.data import list_datasets
from earlyprune.methods.ablations import ABLATIONS
from earlyprune.methods.scoring import METHODS
from earlyprune.models import list_models
from earlyprune.run import stages
from earlyprune.run.spec import BASELINES, PRESETS, RunSpec

QUICK = ["--dataset", "fashion-mnist-mini", "--epochs", "0.25", "--device", "cpu"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two cores shared with other work: no spinning thread pairs
    yield
    torch.set_num_threads(threads)


def call(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Runs the command in-process: (exit code, stdout, stderr)."""
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse mistakes exit from inside parse_args
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_run_prints_the_run_id_and_a_summary_then_serves_it_from_the_store(
    tmp_path, capsys, monkeypatch
):
    store = tmp_path / "runs"
    # --quiet: no per-epoch lines (captured stdout is not a terminal; see test_logs.py).
    argv = [
        "run",
        *QUICK,
        "--method",
        "snip",
        "--sparsity",
        "0.9",
        "--store",
        str(store),
        "--quiet",
    ]
    code, out, err = call(argv, capsys)
    expected_id = RunSpec(method="snip", sparsity=0.9, epochs=0.25).run_id
    assert code == 0 and err == ""
    head, summary = out.strip().splitlines()
    assert head == f"run {expected_id} → {store / expected_id}"
    assert summary.startswith(f"{expected_id}  smallcnn/fashion-mnist-mini  snip  s=90.0%")
    assert "test accuracy" in summary and "density 10.00%" in summary
    assert (store / expected_id / "result.json").is_file()

    def no_training(*args, **kwargs):
        raise AssertionError("a stored run was trained again")

    monkeypatch.setattr(stages, "train", no_training)
    # The same line again, saying it was served from the store (not recomputed).
    stored = f"{summary}  stored: served from the store, not recomputed\n"
    assert call(argv, capsys) == (0, stored, "")


def test_a_run_that_does_not_end_ok_exits_1_with_its_status(tmp_path, capsys):
    demo = PRESETS.get("demo")
    PRESETS.add("test_cli_diverging", dataclasses.replace(demo, name="test_cli_diverging", lr=1e8))
    try:
        argv = [
            "run",
            *QUICK,
            "--method",
            "dense",
            "--sparsity",
            "0",
            "--preset",
            "test_cli_diverging",
            "--store",
            str(tmp_path / "runs"),
        ]
        code, out, err = call(argv, capsys)
    finally:
        PRESETS.remove("test_cli_diverging")
    assert code == 1 and err == ""
    assert out.strip().splitlines()[-1].endswith("status=diverged")


def test_list_names_every_registered_entry(capsys):
    code, out, err = call(["list"], capsys)
    assert code == 0 and err == ""
    names = [
        *list_models(),
        *list_datasets(),
        *METHODS.names(),
        *BASELINES,
        "dense",
        *ABLATIONS,
        *PRESETS.names(),
    ]
    missing = [n for n in names if n not in out.split() and f"{n}," not in out.split()]
    assert missing == []


BASE = ["run", "--dataset", "fashion-mnist-mini", "--method", "snip", "--sparsity", "0.9"]
MISTAKES = {
    "unknown method": ["run", *QUICK, "--method", "sniip", "--sparsity", "0.9"],
    "unknown model": [*BASE, "--model", "resnet1000"],
    "unknown dataset": ["run", "--dataset", "cifar11", "--method", "snip", "--sparsity", "0.9"],
    "unknown dataset with preset": [
        "run",
        "--dataset",
        "cifar11",
        "--preset",
        "demo",
        "--method",
        "snip",
        "--sparsity",
        "0.9",
    ],
    "unknown ablation": [*BASE, "--ablation", "flip"],
    "unknown preset": [*BASE, "--preset", "nope"],
    "unknown scope": [*BASE, "--scope", "local"],
    "unknown precision": [*BASE, "--precision", "fp8"],
    "negative sparsity": [*BASE[:-1], "-0.1"],
    "sparsity 1": [*BASE[:-1], "1.0"],
    "sparsity abc": [*BASE[:-1], "abc"],
    "sparsity nan": [*BASE[:-1], "nan"],
    "dense with sparsity": [*BASE[:-3], "dense", "--sparsity", "0.5"],
    "missing sparsity": BASE[:-2],
    "prune step beyond training": [*BASE, "--epochs", "0.25", "--prune-step", "100000"],
    "negative prune step": [*BASE, "--prune-step", "-1"],
    "epochs 0": [*BASE, "--epochs", "0"],
    "epochs inf": [*BASE, "--epochs", "inf"],
    "seed abc": [*BASE, "--seed", "abc"],
    "rounds 0": [*BASE, "--rounds", "0"],
    "no gpu": [*BASE, "--epochs", "0.25", "--device", "cuda:99"],
    "accumulate not dividing the batch": [*BASE, "--accumulate", "3"],  # demo: batch 128
    "accumulate 0": [*BASE, "--accumulate", "0"],
}


@pytest.mark.parametrize("argv", MISTAKES.values(), ids=MISTAKES.keys())
def test_user_mistakes_give_one_line_exit_2_and_write_nothing(tmp_path, capsys, argv):
    store = tmp_path / "runs"
    code, out, err = call([*argv, "--store", str(store)], capsys)
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("earlyprune: error: "), err
    assert "Traceback" not in out + err
    assert not store.exists()


def test_a_store_path_that_is_a_file_is_a_user_mistake(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("keep me")
    code, _, err = call([*BASE, "--epochs", "0.25", "--store", str(f)], capsys)
    assert code == 2 and err.startswith("earlyprune: error: ") and len(err.splitlines()) == 1
    assert f.read_text() == "keep me"


def test_missing_data_files_are_a_user_mistake(tmp_path, capsys):
    argv = [
        "run",
        "--dataset",
        "mnist",
        "--method",
        "snip",
        "--sparsity",
        "0.5",
        "--data-root",
        str(tmp_path / "empty"),
        "--store",
        str(tmp_path / "runs"),
    ]
    code, _, err = call(argv, capsys)
    assert code == 2 and err.startswith("earlyprune: error: mnist") and len(err.splitlines()) == 1
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_the_console_script_runs(tmp_path):
    script = Path(sys.executable).with_name("earlyprune")
    exe = str(script) if script.exists() else shutil.which("earlyprune")
    assert exe, "the earlyprune console script is not installed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    argv = [
        exe,
        "run",
        *QUICK,
        "--method",
        "random",
        "--sparsity",
        "0.5",
        "--store",
        str(tmp_path / "runs"),
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    run_id = RunSpec(method="random", sparsity=0.5, epochs=0.25).run_id
    assert proc.stdout.splitlines()[0].startswith(f"run {run_id} ")
    assert (tmp_path / "runs" / run_id / "result.json").is_file()
