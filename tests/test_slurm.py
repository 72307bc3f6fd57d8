"""`--backend slurm`: bad setups (always), and real sweeps through a real Slurm (where one
answers: `scripts/slurm-local start`, which .ci/run calls).

The grid is test_faults's (the demo network on the embedded data, 1.5 epochs, so each run
writes a mid-run checkpoint): a dense run, SNIP, magnitude after training and random pruning at
step 5. Every job trains on one thread, as the local reference does, so results must be equal.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from earlyprune import cli
from earlyprune.run.spec import RunSpec
from earlyprune.run.store import RunStore
from earlyprune.sweeps.grid import load_sweep, run_specs

GRID = """
[base]
dataset = "fashion-mnist-mini"
epochs = 1.5
device = "cpu"
[axes]
method = ["snip", "magnitude_after_training"]
sparsity = [0.9]
[[include]]
method = "random"
sparsity = 0.5
prune_step = 5
"""
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
ENV["PYTHONPATH"] = os.pathsep.join(
    [str(Path(__file__).resolve().parents[1] / "src"), *filter(None, [ENV.get("PYTHONPATH")])]
)


def slurm_answers() -> str:
    """Why the Slurm tests cannot run here ("" where they can)."""
    if shutil.which("sinfo") is None:
        return "no Slurm here (sinfo not found; scripts/slurm-local start installs one)"
    try:
        import submitit  # noqa: F401
    except ImportError:
        return "submitit is not installed (pip install 'earlyprune[slurm]')"
    done = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    if done.returncode != 0:
        return f"Slurm does not answer: {done.stderr.strip()} (scripts/slurm-local start)"
    if not any(s.strip() in ("idle", "mixed", "allocated") for s in done.stdout.splitlines()):
        return f"no Slurm node is up (sinfo: {done.stdout.strip()!r})"
    return ""


needs_slurm = pytest.mark.skipif(bool(slurm_answers()), reason=slurm_answers() or "-")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("slurm")
    toml = folder / "grid.toml"
    toml.write_text(GRID, encoding="utf-8")
    return {"toml": toml, "folder": folder}


def reference(files: dict[str, Path]) -> Path:
    """The local backend's store for the grid (made once)."""
    store = files["folder"] / "reference"
    if not store.exists():
        results = run_specs(load_sweep(files["toml"]).specs, RunStore(store), workers=1)
        assert [r["status"] for r in results] == ["ok"] * 4
    return store


def report(store: Path) -> pd.DataFrame:
    out = store.with_name(store.name + "-report")
    assert cli.main(["report", str(store), "--out", str(out)]) == 0
    df = pd.read_csv(out / "results.csv")
    spec = [f.name for f in dataclasses.fields(RunSpec) if f.name in df.columns]
    return df[["run_id", *spec, "status", "test_accuracy", "density"]]


def sweep(toml: Path, store: Path, *flags: str) -> list[str]:
    cmd = [sys.executable, "-m", "earlyprune.cli", "sweep", "run", str(toml)]
    return [*cmd, "--store", str(store), "--backend", "slurm", "--mem", "1", *flags]


def epochs_once(store: Path, ids: list[str]) -> None:
    """No epoch trained twice: each logged step appears once in a run's metrics."""
    for rid in ids:
        lines = (store / rid / "metrics.jsonl").read_text().splitlines()
        steps = [line.split('"step": ')[1].split(",")[0] for line in lines]
        assert len(steps) == len(set(steps)), rid


# ---- bad setups: one line, exit 2, nothing written ---------------------------------------------
def test_no_slurm_answering_is_one_line(files, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no sinfo, squeue, sbatch
    store = tmp_path / "store"
    code = cli.main(
        ["sweep", "run", str(files["toml"]), "--store", str(store), "--backend", "slurm"]
    )
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "no Slurm here (sinfo not found)" in err and "slurm-local start" in err
    assert not store.exists()


def test_submitit_missing_is_one_line(files, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "submitit", None)  # `import submitit` raises ImportError
    store = tmp_path / "store"
    for argv in (
        ["sweep", "run", str(files["toml"]), "--store", str(store), "--backend", "slurm"],
        ["demo", "--quick", "--store", str(store), "--backend", "slurm"],
    ):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert err.strip() == (
            "earlyprune: error: --backend slurm needs submitit: pip install 'earlyprune[slurm]'"
        )
    assert not store.exists()


@needs_slurm
def test_unknown_partition_and_bad_sbatch_line_are_one_line(files, tmp_path, capsys) -> None:
    store = tmp_path / "store"
    base = ["sweep", "run", str(files["toml"]), "--store", str(store), "--backend", "slurm"]
    assert cli.main([*base, "--partition", "nosuchpartition"]) == 2
    err = capsys.readouterr().err
    assert "unknown Slurm partition 'nosuchpartition'; this cluster has: " in err
    assert len(err.strip().splitlines()) == 1
    assert cli.main([*base, "--sbatch", "constraint"]) == 2
    assert "expected NAME=VALUE" in capsys.readouterr().err
    assert not store.exists()


# ---- real sweeps through Slurm ------------------------------------------------------------------
@needs_slurm
@pytest.mark.slow
def test_a_sweep_through_slurm_equals_the_local_backend_run_for_run(files, tmp_path) -> None:
    store = tmp_path / "store"
    done = subprocess.run(
        sweep(files["toml"], store, "--workers", "2"), env=ENV, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "slurm: submitted job array" in done.stderr
    assert done.stdout.strip().endswith("4 done (4 ok, 0 diverged), 0 failed, 0 running, 0 pending")
    pd.testing.assert_frame_equal(report(store), report(reference(files)))
    ids = [s.run_id for s in load_sweep(files["toml"]).specs]
    epochs_once(store, ids)
    cmd = [sys.executable, "-m", "earlyprune.cli", "sweep", "status", str(files["toml"])]
    status = subprocess.run([*cmd, "--store", str(store)], env=ENV, capture_output=True, text=True)
    assert status.returncode == 0, status.stderr
    assert "slurm job " in status.stdout and "(submitted " in status.stdout, status.stdout


@needs_slurm
@pytest.mark.slow
def test_scancel_mid_run_then_the_rerun_finishes_every_run_once(files, tmp_path) -> None:
    store = tmp_path / "store"
    ids = [s.run_id for s in load_sweep(files["toml"]).specs]
    # One job, detached: the command returns once the array is submitted.
    done = subprocess.run(
        sweep(files["toml"], store, "--workers", "1", "--detach"),
        env=ENV,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    job = done.stderr.split("submitted job array ")[1].split()[0]
    deadline = time.monotonic() + 300
    # Cancel once a run has checkpointed mid-way (latest.pt) and is not finished.
    while not [p for p in store.glob("*/latest.pt") if not (p.parent / "result.json").exists()]:
        assert time.monotonic() < deadline, "no run checkpointed mid-way"
        time.sleep(0.05)
    subprocess.run(["scancel", job], check=True)
    while subprocess.run(
        ["squeue", "-h", "-j", job], capture_output=True, text=True
    ).stdout.strip():
        assert time.monotonic() < deadline, "the cancelled job did not end"
        time.sleep(0.2)
    left = [rid for rid in ids if not (store / rid / "result.json").exists()]
    assert left, "the job finished every run before the cancel took effect"
    firsts = {rid: (store / rid / "result.json").stat().st_ino for rid in ids if rid not in left}
    rerun = subprocess.run(
        sweep(files["toml"], store, "--workers", "2"), env=ENV, capture_output=True, text=True
    )
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.strip().endswith(
        "4 done (4 ok, 0 diverged), 0 failed, 0 running, 0 pending"
    )
    # Runs finished before the cancel were not done again (their result.json is the same file).
    assert {rid: (store / rid / "result.json").stat().st_ino for rid in firsts} == firsts
    epochs_once(store, ids)
    assert not list(store.glob("*/claim")) and not list(store.glob("*/latest.pt"))
    pd.testing.assert_frame_equal(report(store), report(reference(files)))
