"""Fused sweeps under faults (issue 23): SIGKILL mid-pack, two sweeps on one store, a user's
network in a pack, a member that diverges, and reports that keep fused and solo runs apart.

The grid is the one of ``test_faults``: a dense run (solo), SNIP, magnitude after training and
random pruning at step 5 (the three pruned runs form one pack with ``--fuse 4``), 1.5 epochs so
each member writes one mid-run checkpoint. Every process trains on one thread, so the
uninterrupted fused sweep is reproduced bit for bit.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch
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

from earlyprune import cli
from earlyprune.analysis.aggregate import summarize
from earlyprune.analysis.load import load_results
from earlyprune.run.spec import RunSpec
from earlyprune.run.stages import prepare
from earlyprune.run.store import RunStore


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


# ---- a user's network in a pack, and a member that diverges ------------------------------------
NET = """
import torch
from torch import nn


class Fragile(nn.Module):
    # Blows its logits up when the mask pruned the first weight of the first layer: a mask
    # (seeded per run) decides which members diverge, never the partners.
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        gain = torch.where(self.net[1].weight[0, 0] == 0, 1e20, 1.0)
        return self.net(x) * gain


def build(num_classes, input_shape):
    c, h, w = input_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, 16), nn.ReLU(),
                         nn.Linear(16, num_classes))


def fragile(num_classes, input_shape):
    return Fragile(build(num_classes, input_shape))
"""


def solo_and_fused(specs: list[RunSpec], tmp_path: Path) -> tuple[list[dict], list[dict]]:
    from earlyprune.sweeps.grid import run_specs

    solo = run_specs(specs, RunStore(tmp_path / "solo"), workers=1, progress=False)
    fused = run_specs(specs, RunStore(tmp_path / "fused"), workers=1, progress=False, fuse=4)
    return solo, fused


@pytest.mark.slow
def test_a_user_network_trains_fused_through_a_sweep(tmp_path: Path) -> None:
    (tmp_path / "net.py").write_text(NET)
    base = RunSpec(
        model=f"{tmp_path}/net.py:build",
        dataset="fashion-mnist-mini",
        epochs=0.5,
        device="cpu",
        method="snip",
        sparsity=0.8,
    )
    specs = [base, base.replace(method="magnitude", seed=1), base.replace(method="random", seed=2)]
    solo, fused = solo_and_fused(specs, tmp_path)
    store = RunStore(tmp_path / "fused")
    for s, f in zip(solo, fused, strict=True):
        assert s["status"] == f["status"] == "ok" and f["spec"]["engine"] == "fused"
        assert f["fused"]["k"] == 3 and f["spec"]["model"].startswith("net:build@")
        assert abs(s["test_accuracy"] - f["test_accuracy"]) <= 0.03
        mask, final = (
            store.load_tensors(f["run_id"], "mask.pt"),
            store.load_tensors(f["run_id"], "final.pt"),
        )
        for name, keep in mask.items():  # pruned weights exactly zero
            assert (final["model"][name][~keep] == 0).all() and keep.any()


@pytest.mark.slow
def test_a_member_that_diverges_is_stored_diverged_and_the_others_finish(tmp_path: Path) -> None:
    (tmp_path / "net.py").write_text(NET)
    base = RunSpec(
        model=f"{tmp_path}/net.py:fragile",
        dataset="fashion-mnist-mini",
        epochs=0.5,
        device="cpu",
        method="random",
        sparsity=0.5,
    )
    specs = [base.replace(seed=s) for s in range(4)]
    solo, fused = solo_and_fused(specs, tmp_path)
    statuses = [r["status"] for r in solo]
    assert {"ok", "diverged"} <= set(statuses), statuses  # the draw splits these seeds
    assert [r["status"] for r in fused] == statuses
    store = RunStore(tmp_path / "fused")
    for s, f in zip(solo, fused, strict=True):
        assert f["fused"]["k"] == 4
        assert f["steps_trained"] == s["steps_trained"], f["run_id"]  # stopped where solo stops
        assert len(f["curve"]) == len(s["curve"])
        if s["status"] == "ok":
            assert abs(s["test_accuracy"] - f["test_accuracy"]) <= 0.03
            assert store.load_tensors(f["run_id"], "final.pt") is not None
        else:
            assert f["test_accuracy"] is None
    assert cli.main(["report", str(tmp_path / "fused")]) == 0
    df = pd.read_csv(tmp_path / "fused" / "report" / "results.csv")
    assert sorted(df["status"]) == sorted(statuses)


# ---- reports keep a fused run and its solo twin apart ------------------------------------------
def test_a_fused_run_never_pools_with_its_solo_twin(tmp_path: Path) -> None:
    from test_analysis import write_run

    for seed, (solo, fused) in enumerate([(0.80, 0.60), (0.82, 0.62)]):
        write_run(tmp_path, f"solo{seed}", acc=solo, method="snip", sparsity=0.9, seed=seed)
        write_run(
            tmp_path,
            f"fused{seed}",
            acc=fused,
            method="snip",
            sparsity=0.9,
            seed=seed,
            engine="fused",
        )
    df = load_results(tmp_path)
    assert sorted(df["method"]) == ["snip", "snip", "snip[fused]", "snip[fused]"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # two groups, not one group that mixes settings
        summary = summarize(df)
    means = dict(zip(summary["method"], summary["mean"], strict=True))
    assert means == pytest.approx({"snip": 0.81, "snip[fused]": 0.61})
    assert list(summary["n"]) == [2, 2]


def test_verdicts_judge_fused_runs_against_the_fused_reference() -> None:
    from earlyprune.analysis.verdicts import verdicts

    def result(rid: str, method: str, acc: float, seed: int, engine: str) -> dict:
        spec = {"method": method, "ablation": "none", "sparsity": 0.9, "seed": seed}
        return {
            "run_id": rid,
            "spec": {**spec, "engine": engine},
            "status": "ok",
            "test_accuracy": acc,
        }

    runs = [
        *(result(f"s{i}", "snip", 0.80 + i / 100, i, "fused") for i in range(3)),
        *(result(f"r{i}", "random", 0.60 + i / 100, i, "fused") for i in range(3)),
        *(result(f"q{i}", "random", 0.90 + i / 100, i, "solo") for i in range(3)),  # solo twins
    ]
    found = {v.check: v for v in verdicts(runs, "snip[fused]", [0.9])}
    assert found["beats random"].answer == "yes"  # against random[fused], not the solo twins
    assert found["beats random"].effect == pytest.approx(0.20)
    only_solo = [r for r in runs if not r["run_id"].startswith("r")]
    found = {v.check: v for v in verdicts(only_solo, "snip[fused]", [0.9])}
    assert found["beats random"].answer == "no"  # no fused reference: the solo one stands in
