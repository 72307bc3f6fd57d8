"""Sweeps: TOML grids, executors, and results that survive kills and concurrent sweeps.

The runs are real but tiny: the demo network on the embedded data for a quarter epoch (16 steps).
A module-scoped reference sweep (local executor, 2 workers, never interrupted) is what the
interrupted, concurrent and Ray sweeps must reproduce exactly: CPU training is deterministic
and every worker uses one thread (2 workers on 2 cores, or 1 core per Ray task).
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

import pytest
import torch

from earlyprune import cli
from earlyprune.run.spec import RunSpec
from earlyprune.run.store import RunStore
from earlyprune.sweeps.executors import local
from earlyprune.sweeps.grid import expand, load_sweep, run_specs, sweep_status

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "sweeps"
TINY = 'dataset = "fashion-mnist-mini"\nepochs = 0.25\n'
# 12 runs from the grid + 2 dense prerequisites + 1 run pruned at step 3 = 15 (the demo
# preset at 0.25 epochs has only a handful of steps: keep the step small).
GRID = f"""
[base]
{TINY}
[axes]
method = ["random", "snip", "magnitude_after_training"]
sparsity = [0.5, 0.9]
seed = [0, 1]

[[include]]
method = "random"
sparsity = 0.5
prune_step = 3
"""
# The part of GRID the kill and concurrency tests rerun: 8 + 2 dense + 1 = 11 runs.
SMALL = GRID.replace(
    '"random", "snip", "magnitude_after_training"', '"random", "magnitude_after_training"'
)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> RunStore:
    """The uninterrupted sweep of GRID: local executor, 2 worker processes."""
    folder = tmp_path_factory.mktemp("reference")
    sweep = load_sweep(write(folder / "grid.toml", GRID))
    store = RunStore(folder / "store")
    results = run_specs(sweep.specs, store, workers=2, progress=False)
    assert [r["run_id"] for r in results] == [s.run_id for s in sweep.specs]
    return store


def assert_same_runs(store: RunStore, ref: RunStore, run_ids: list[str]) -> None:
    """Same accuracy, curve, density, mask and final weights as the reference, bit for bit."""
    for rid in run_ids:
        got, want = store.read_result(rid), ref.read_result(rid)
        assert got["status"] == want["status"] == "ok", rid
        for key in ("test_accuracy", "density", "layer_density", "curve", "steps_trained"):
            assert got[key] == want[key], (rid, key)
        for name in ("mask.pt", "final.pt"):
            a, b = store.load_tensors(rid, name), ref.load_tensors(rid, name)
            assert (a is None) == (b is None), (rid, name)
            if a is not None:
                a, b = a.get("model", a), b.get("model", b)
                assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), (rid, name)


def assert_clean(store: RunStore, run_ids: list[str]) -> None:
    """Exactly one result per run, one metrics line at most, no claim or temporary file left."""
    for rid in run_ids:
        folder = store.run_dir(rid)
        assert (folder / "result.json").is_file(), rid
        lines = (folder / "metrics.jsonl").read_text().splitlines()
        assert len([json.loads(line) for line in lines if line.endswith("}")]) <= 1, rid
        litter = [p.name for p in folder.iterdir() if p.name == "claim" or p.name.startswith(".")]
        assert litter == [], (rid, litter)


def sweep_cmd(toml: Path, store: Path, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "earlyprune.cli",
        "sweep",
        "run",
        str(toml),
        "--store",
        str(store),
        "--workers",
        str(workers),
    ]


# ---- files and expansion ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "count"),
    [
        ("resnet20_cifar10_fig4.toml", 7 * 18 * 5 + 5),
        ("vgg16_cifar10_fig4.toml", 7 * 18 * 5 + 5),
        # Dense references for He and N(0, 1) initialization.
        ("resnet20_ablations_fig5.toml", 4 * 5 * 18 * 5 + 2 * 5),
        ("demo_small.toml", 5 * 3 + 1),
        ("demo_hyperparameters.toml", 3 * 2 * 2 + 2 * 2 + 1 + 1),
        ("allocation_placement.toml", 3 * 3 * 2 * 2 + 2),
        ("structure_sweep.toml", 2 * 3 * 2 * 3 + 2 * 3 + 3),
    ],
)
def test_example_sweeps_parse_and_expand(name: str, count: int) -> None:
    sweep = load_sweep(EXAMPLES / name)
    assert len(sweep.specs) == count == len({s.run_id for s in sweep.specs})
    dense = [s.method == "dense" for s in sweep.specs]
    assert dense == sorted(dense, reverse=True)  # prerequisites first
    assert sweep.store == f"runs/{name.removesuffix('.toml')}"


def test_every_example_file_is_covered() -> None:
    covered = {
        "resnet20_cifar10_fig4",
        "vgg16_cifar10_fig4",
        "resnet20_ablations_fig5",
        "demo_small",
        "allocation_placement",
        "demo_hyperparameters",
        "structure_sweep",
    }
    assert {p.stem for p in EXAMPLES.glob("*.toml")} == covered


def test_expand_grid_dense_references_and_prerequisites() -> None:
    base = {"dataset": "fashion-mnist-mini"}
    specs = expand(base, {"method": ["snip", "ltr"], "sparsity": {"paper_grid": [1, 3]}})
    assert [s.method for s in specs] == ["dense"] + ["snip"] * 3 + ["ltr"] * 3
    assert sorted({s.sparsity for s in specs[1:]}) == [0.2, 0.36, 0.488]
    assert specs[0] == specs[1].dense_spec() and specs[0].preset == "demo"
    # Without dense references the prerequisite of LTR stays; pruning at init needs none.
    assert [
        s.method for s in expand(base, {"method": ["snip"], "sparsity": [0.5]}, dense=False)
    ] == ["snip"]
    assert [
        s.method for s in expand(base, {"method": ["ltr"], "sparsity": [0.5]}, dense=False)
    ] == ["dense", "ltr"]
    # "dense" in the method axis keeps only its unablated combinations without sparsity.
    specs = expand(base, {"method": ["dense"], "ablation": ["none", "shuffle", "init_normal"]})
    assert [(s.method, s.init) for s in specs] == [("dense", "kaiming_fan_in"), ("dense", "normal")]


def test_dense_combinations_are_skipped_and_counted(tmp_path: Path) -> None:
    toml = f'[base]\n{TINY}[axes]\nmethod = ["dense", "snip"]\nsparsity = [0.5, 0.9]\n'
    toml += '[[include]]\nmethod = "dense"\n'
    sweep = load_sweep(write(tmp_path / "s.toml", toml))
    assert sweep.skipped == 2
    assert [s.method for s in sweep.specs] == ["dense", "snip", "snip"]


def test_preset_gives_model_and_dataset(tmp_path: Path) -> None:
    sweep = load_sweep(
        write(
            tmp_path / "s.toml",
            '[base]\npreset = "vgg16_cifar10"\n[axes]\nmethod = ["snip"]\nsparsity = [0.5]\n',
        )
    )
    assert {(s.model, s.dataset) for s in sweep.specs} == {("vgg16", "cifar10")}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[base]\ndataset = "cifar10"\n[axes\nseed = [1]\n', "line 3"),
        ("[axes]\nseeds = [0, 1]\n", "'seeds'"),
        ("[axes]\nseed = []\n", "axis 'seed' is empty"),
        ("[axes]\nseed = 3\n", "axis 'seed' must be a list"),
        ("[axis]\nseed = [1]\n", "unknown key(s) axis"),
        ('[base]\nmethod = "snip"\n[axes]\nsparsity = [0.5, 1.5]\n', "sparsity must be"),
        ('[axes]\nsparsity = { paper_grid = [0, 3] }\nmethod = ["snip"]\n', "paper_grid"),
        ('[axes]\nmethod = ["snipp"]\nsparsity = [0.5]\n', "unknown method 'snipp'"),
        ('[options]\ndense = "yes"\n', "option dense must be true or false"),
        (
            '[base]\ndataset = "fashion-mnist-mini"\nprune_step = 9999\n'
            '[axes]\nmethod = ["random"]\nsparsity = [0.5]\n',
            "prune step 9999 is beyond",
        ),
    ],
)
def test_bad_sweep_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, problem: str
) -> None:
    toml = write(tmp_path / "bad.toml", text)
    store = tmp_path / "store"
    assert cli.main(["sweep", "run", str(toml), "--store", str(store), "--workers", "1"]) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and problem in err, err
    assert str(toml) in err or "prune step" in err  # that one is found when the data is loaded
    assert out == "" and not store.exists()


def test_missing_file_and_unknown_backend(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["sweep", "plan", str(tmp_path / "nope.toml")]) == 2
    assert "not found" in capsys.readouterr().err
    toml = write(tmp_path / "s.toml", f"[base]\n{TINY}")
    assert cli.main(["sweep", "run", str(toml), "--backend", "kubernetes"]) == 2
    assert (
        "unknown executor 'kubernetes'; choose one of: local, ray, slurm" in capsys.readouterr().err
    )


# ---- running --------------------------------------------------------------------------------
@pytest.mark.slow
def test_local_sweep_runs_every_run_once(
    reference: RunStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sweep = load_sweep(write(tmp_path / "grid.toml", GRID))
    assert len(sweep.specs) == 15
    assert sweep_status(sweep.specs, reference) == {
        "done": 15,
        "ok": 15,
        "disconnected": 0,
        "diverged": 0,
        "failed": 0,
        "damaged": 0,
        "running": 0,
        "pending": 0,
    }
    ids = [s.run_id for s in sweep.specs]
    assert_clean(reference, ids)
    for rid in ids:  # one evaluation (a quarter epoch) per execution
        assert len((reference.run_dir(rid) / "metrics.jsonl").read_text().splitlines()) == 1
    # Done runs are skipped without starting any worker.
    monkeypatch.setattr(local, "_pool_pass", lambda *a: pytest.fail("a pool was started"))
    again = run_specs(sweep.specs, reference, workers=2)
    assert again == [reference.read_result(rid) for rid in ids]
    assert (
        cli.main(["sweep", "plan", str(tmp_path / "grid.toml"), "--store", str(reference.root)])
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 16 and lines[0].startswith(ids[0]) and lines[0].endswith("ok")
    assert lines[-1].endswith("15 done (15 ok, 0 diverged), 0 failed, 0 running, 0 pending")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ray_sweep_matches_local(reference: RunStore, tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    sweep = load_sweep(write(tmp_path / "grid.toml", GRID))
    store = RunStore(tmp_path / "store")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        results = run_specs(sweep.specs, store, workers=2, backend="ray", progress=False)
    finally:
        ray.shutdown()
    assert [r["status"] for r in results] == ["ok"] * 15
    assert_same_runs(store, reference, [s.run_id for s in sweep.specs])
    assert_clean(store, [s.run_id for s in sweep.specs])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigkill_at_random_moments_then_resume(reference: RunStore, tmp_path: Path) -> None:
    toml = write(tmp_path / "small.toml", SMALL)
    ids = [s.run_id for s in load_sweep(toml).specs]
    store = tmp_path / "store"
    rng = random.Random(20210503)
    interrupted = []
    # Kill at a random moment after this sweep's workers took their first run (a fresh claim),
    # then after a run finished (results are being written, next runs being claimed).
    for trigger in ("claim", "result.json", "result.json"):
        started = time.time()
        proc = subprocess.Popen(
            sweep_cmd(toml, store, 2), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if any(p.stat().st_mtime >= started for p in store.glob(f"*/{trigger}")):
                break
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 1.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        begun = {p.parent.name for p in store.glob("*/spec.json")}
        interrupted.append(bool(begun - {p.parent.name for p in store.glob("*/result.json")}))
    assert any(interrupted)  # at least one kill cut a run short (a run lasts ≥ 0.3 s)
    final = subprocess.run(sweep_cmd(toml, store, 2), capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    assert final.stdout.strip().endswith(
        f"{len(ids)} done ({len(ids)} ok, 0 diverged), 0 failed, 0 running, 0 pending"
    )
    assert_clean(RunStore(store), ids)
    assert_same_runs(RunStore(store), reference, ids)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_concurrent_sweeps_share_one_store(reference: RunStore, tmp_path: Path) -> None:
    toml = write(tmp_path / "small.toml", SMALL)
    ids = [s.run_id for s in load_sweep(toml).specs]
    store = tmp_path / "store"
    procs = [
        subprocess.Popen(
            sweep_cmd(toml, store, 2), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    for rid in ids:  # a second execution of a run would append a second evaluation line
        assert len((store / rid / "metrics.jsonl").read_text().splitlines()) == 1, rid
    assert_clean(RunStore(store), ids)
    assert_same_runs(RunStore(store), reference, ids)


def test_a_run_that_raises_is_recorded_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from earlyprune.run.recipes.at_init import AtInit

    real = AtInit.choose_mask

    def choose_mask(self, setup, store, model):  # type: ignore[no-untyped-def]
        if setup.spec.method == "snip":
            raise RuntimeError("scores are all NaN")
        return real(self, setup, store, model)

    monkeypatch.setattr(AtInit, "choose_mask", choose_mask)
    specs = expand(
        {"dataset": "fashion-mnist-mini", "epochs": 0.25},
        {"method": ["snip", "random"], "sparsity": [0.5]},
        dense=False,
    )
    store = RunStore(tmp_path / "store")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a worker would: 2 threads on a busy 2-core machine crawl
    try:
        results = run_specs(specs, store, workers=1)  # in this process, so the patch applies
        assert [(r["spec"]["method"], r["status"]) for r in results] == [
            ("snip", "failed"),
            ("random", "ok"),
        ]
        assert results[0]["error"].startswith("RuntimeError: scores are all NaN (at ")
        assert "test_sweep.py, line " in results[0]["error"]
        assert sweep_status(specs, store)["failed"] == 1
        finished = store.read_result(specs[1].run_id)
        # --retry-failed runs it again (now it succeeds); the others are not run again.
        monkeypatch.setattr(AtInit, "choose_mask", real)
        results = run_specs(specs, store, workers=1, retry_failed=True)
    finally:
        torch.set_num_threads(threads)
    assert [r["status"] for r in results] == ["ok", "ok"] and results[1] == finished


@pytest.mark.slow
def test_a_failing_run_in_a_worker_does_not_stop_the_sweep(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A mistake only the run itself finds (too few examples per class for the scoring batch).
    toml = write(
        tmp_path / "s.toml",
        f'[base]\n{TINY}[axes]\nmethod = ["snip", "random"]\n'
        "sparsity = [0.5]\nscoring_per_class = [10, 100000]\n",
    )
    store = tmp_path / "store"
    assert cli.main(["sweep", "run", str(toml), "--store", str(store), "--workers", "2"]) == 1
    out = capsys.readouterr().out
    assert out.count("failed: ") == 2 and "scoring needs 100000 training examples" in out
    assert out.strip().endswith(
        "5 runs in " + str(store) + ": 3 done (3 ok, 0 diverged), 2 failed, 0 running, 0 pending"
    )


def test_a_worker_that_dies_is_retried_alone_then_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import earlyprune.run.pipeline

    # "fork" so that the workers inherit the patched pipeline.run; they run no torch code.
    def run(spec, store, **_):  # type: ignore[no-untyped-def]
        with store.claim(spec.run_id):
            if spec.method == "snip":
                os._exit(9)  # the OS killing the worker, e.g. for memory
            result = {"run_id": spec.run_id, "spec": spec.to_dict(), "status": "ok"}
            store.write_json(spec.run_id, "result.json", result)
            return result

    monkeypatch.setattr(local, "START_METHOD", "fork")
    monkeypatch.setattr(earlyprune.run.pipeline, "run", run)
    specs = expand(
        {"dataset": "fashion-mnist-mini", "epochs": 0.25},
        {"method": ["random", "snip"], "sparsity": [0.5], "seed": [0, 1]},
        dense=False,
    )
    store = RunStore(tmp_path / "store")
    results = run_specs(specs, store, workers=2)
    status = {(r["spec"]["method"], r["spec"]["seed"]): r["status"] for r in results}
    assert status == {
        ("random", 0): "ok",
        ("random", 1): "ok",
        ("snip", 0): "failed",
        ("snip", 1): "failed",
    }
    assert "died twice" in results[-1]["error"]
    assert not list(store.root.glob("*/claim"))


def test_status_shows_running_claims(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    toml = write(
        tmp_path / "s.toml", f'[base]\n{TINY}[axes]\nmethod = ["snip"]\nsparsity = [0.5]\n'
    )
    sweep = load_sweep(toml)
    store = RunStore(tmp_path / "store")
    with store.claim(sweep.specs[1].run_id):
        assert sweep_status(sweep.specs, store) == {
            "done": 0,
            "ok": 0,
            "disconnected": 0,
            "diverged": 0,
            "failed": 0,
            "damaged": 0,
            "running": 1,
            "pending": 1,
        }
        assert cli.main(["sweep", "status", str(toml), "--store", str(store.root)]) == 0
    assert capsys.readouterr().out.strip().endswith("0 failed, 1 running, 1 pending")


def test_ray_missing_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    specs = [RunSpec(epochs=0.25)]
    with pytest.raises(ValueError, match=r"pip install 'earlyprune\[ray\]'"):
        run_specs(specs, RunStore(tmp_path / "store"), backend="ray")
    assert not (tmp_path / "store").exists()
