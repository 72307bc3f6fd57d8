"""Fused sweeps under faults (issue 23): SIGKILL mid-pack, two sweeps on one store, a user's
network in a pack, a member that diverges, and reports that keep fused and solo runs apart.

The grid is the one of ``test_faults``: a dense run (solo), SNIP, magnitude after training and
random pruning at step 5 (the three pruned runs form one pack with ``--fuse 4``), 1.5 epochs so
each member writes one mid-run checkpoint. Every process trains on one thread, so the
uninterrupted fused sweep is reproduced bit for bit.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from earlyprune import cli
from earlyprune.analysis.aggregate import summarize
from earlyprune.analysis.load import load_results
from earlyprune.run.spec import RunSpec
from earlyprune.run.stages import prepare
from earlyprune.run.store import RunStore
from earlyprune.sweeps.grid import load_sweep
from test_faults import (
    DRIVER,
    ENV,
    EPOCHS,
    GRID,
    assert_no_live_claims,
    claim_owners,
    cores,
    litter,
    one_core,  # noqa: F401  (the module-wide one-thread fixture)
    report,
    results,
)


def fused_sweep(toml: Path, store: Path, workers: int = 1) -> list[str]:
    argv = ["sweep", "run", str(toml), "--store", str(store), "--workers", str(workers)]
    return [*argv, "--fuse", "4"]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The grid, the kill driver and the uninterrupted fused sweep (the reference)."""
    folder = tmp_path_factory.mktemp("fused-faults")
    toml, driver = folder / "grid.toml", folder / "driver.py"
    toml.write_text(GRID, encoding="utf-8")
    driver.write_text(DRIVER, encoding="utf-8")
    assert cli.main(fused_sweep(toml, folder / "reference")) == 0
    return {"toml": toml, "driver": driver, "reference": folder / "reference"}


def fused_ids(toml: Path) -> list[str]:
    """The sweep's run ids as ``--fuse`` makes them (the pruned runs' ids name the engine)."""
    store = RunStore(toml.parent / "reference")
    return sorted(rid for rid in store.run_ids() if store.read_result(rid))


def epochs_logged(store: Path, rid: str) -> list[int]:
    lines = (store / rid / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["step"] for line in lines if line.endswith("}")]


def assert_same_runs(store: Path, reference: Path, ids: list[str]) -> None:
    """Same report, masks and final weights as the reference; every run stored once, clean."""
    got, want = report(store), report(reference)
    assert len(want) == 4 and set(want["status"]) == {"ok"}
    assert (want["engine"] == "fused").sum() == 3
    pd.testing.assert_frame_equal(got, want)
    a, b = RunStore(store), RunStore(reference)
    for rid in ids:
        for name in ("mask.pt", "final.pt"):
            x, y = a.load_tensors(rid, name), b.load_tensors(rid, name)
            assert (x is None) == (y is None), (rid, name)
            if x is not None:
                x, y = x.get("model", x), y.get("model", y)
                assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x), rid
        steps = epochs_logged(store, rid)
        assert len(steps) == len(set(steps)), (rid, steps)  # no epoch logged twice
        assert set(steps) <= set(epochs_logged(reference, rid)), (rid, steps)
        leftover = [p.name for p in (store / rid).iterdir() if p.name in ("claim", "latest.pt")]
        assert leftover == [], (rid, leftover)
    assert litter(store) == [] and not list(store.rglob("*.corrupt"))
    assert_no_live_claims(store, ids)


# ---- SIGKILL mid-pack --------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigkill_mid_pack_then_rerun_gives_the_uninterrupted_results(
    files: dict[str, Path], tmp_path: Path
) -> None:
    setup = prepare(RunSpec(epochs=EPOCHS))
    spe, total = setup.sched.steps_per_epoch, setup.sched.total_steps
    rng = random.Random(20260523)
    replay = 5  # random@5 replays its 5 dense steps before every start of the pack
    moments = [
        f"step:{rng.randint(spe + 1, total - 1)}",  # the dense run (solo), epoch 2
        "after:result.json:1",  # dense done; its claim and latest.pt left behind
        f"step:{replay + rng.randint(1, spe - 1)}",  # the pack, epoch 1 (no member checkpoint)
        "after:latest.pt:2",  # two members at the end of epoch 1, the third at step 0
        f"step:{replay + rng.randint(1, total - spe - 1)}",  # the pack(s) resumed, mid-epoch
        "write:latest.pt:1",  # a member's checkpoint torn half-way
        "write:result.json:2",  # one member stored, the next one's result torn
        "after:final.pt:1",  # a member's final weights stored, its result not yet
    ]
    store, seen = tmp_path / "store", {}
    for hook in moments:
        argv = [sys.executable, str(files["driver"]), hook, *fused_sweep(files["toml"], store)]
        proc = subprocess.run(
            argv, env=ENV, capture_output=True, text=True, timeout=120, preexec_fn=cores(1)
        )
        assert proc.returncode == -signal.SIGKILL, (hook, proc.stdout, proc.stderr)
        now = results(store)
        assert {rid: now[rid] for rid in seen} == seen, hook  # a stored run is never redone
        seen = now
    # And at a random instant of the real command, once the pack holds its claims.
    started = time.time()
    proc = subprocess.Popen(
        [sys.executable, "-m", "earlyprune.cli", *fused_sweep(files["toml"], store)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=cores(1),
    )
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline and not claim_owners(store, started):
        time.sleep(0.01)
    time.sleep(rng.uniform(0.0, 1.0))
    proc.kill()
    proc.wait()
    final = subprocess.run(
        [sys.executable, "-m", "earlyprune.cli", *fused_sweep(files["toml"], store)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=180,
        preexec_fn=cores(1),
    )
    assert final.returncode == 0, final.stderr
    assert final.stdout.strip().endswith(
        "4 done (4 ok, 0 diverged), 0 failed, 0 running, 0 pending"
    )
    assert {rid: results(store)[rid] for rid in seen} == seen
    assert_same_runs(store, files["reference"], fused_ids(files["toml"]))


# ---- two fused sweeps on one store -------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_concurrent_fused_sweeps_never_train_a_run_twice(
    files: dict[str, Path], tmp_path: Path
) -> None:
    store = tmp_path / "store"
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "earlyprune.cli", *fused_sweep(files["toml"], store)],
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=cores(1, first=i),
        )
        for i in range(2)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
        assert out.strip().endswith("4 done (4 ok, 0 diverged), 0 failed, 0 running, 0 pending")
    ids = fused_ids(files["toml"])
    for rid in ids:  # a run trained twice would log its epochs twice
        assert epochs_logged(store, rid) == epochs_logged(files["reference"], rid), rid
    assert_same_runs(store, files["reference"], ids)
