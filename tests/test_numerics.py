"""Numerics versions: a result or checkpoint computed under older numerics is never served.

A store made before numerics versions existed is simulated by removing ``numerics_version`` from
a stored ``result.json`` (and the folder's marker), exactly what such a store holds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from earlyprune import cli
from earlyprune.core.errors import SpecError
from earlyprune.run import numerics
from earlyprune.run.pipeline import run
from earlyprune.run.spec import RunSpec
from earlyprune.run.store import RunStore
from earlyprune.sweeps.grid import run_specs

FAST = 0.25


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_old(store: RunStore, rid: str) -> None:
    """Turns a stored run into what an earlyprune before numerics versions left behind."""
    path = store.path(rid, "result.json")
    record = json.loads(path.read_text())
    record.pop("numerics_version")
    path.write_text(json.dumps(record))
    store.delete(rid, numerics.MARKER)


def files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_results_record_the_version_and_old_ones_are_refused_then_recomputed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = RunSpec(epochs=FAST, device="cpu")
    store = RunStore(tmp_path / "store")
    fresh = run(spec, store, progress=False)
    assert fresh["numerics_version"] == numerics.NUMERICS_VERSION
    assert run(spec, store)["created"] == fresh["created"]  # current: served
    make_old(store, spec.run_id)
    before = files(tmp_path)
    with pytest.raises(SpecError, match="older earlyprune .numerics version 1") as caught:
        run(spec, store)
    assert "--recompute-stale" in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(SpecError, match="older earlyprune"):
        run_specs([spec], store, workers=1, progress=False)
    argv = [
        "run",
        "--dataset",
        "fashion-mnist-mini",
        "--method",
        "dense",
        "--sparsity",
        "0",
        "--epochs",
        str(FAST),
        "--device",
        "cpu",
        "--store",
        str(store.root),
    ]
    capsys.readouterr()
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("earlyprune: error: run ") and err.count("\n") == 1, err
    assert files(tmp_path) == before  # refusing writes nothing
    assert cli.main([*argv, "--recompute-stale"]) == 0
    redone = store.read_result(spec.run_id)
    assert redone["numerics_version"] == numerics.NUMERICS_VERSION
    assert redone["test_accuracy"] == fresh["test_accuracy"]  # same numerics: same numbers
    assert store.path(spec.run_id, numerics.STALE_RESULT).exists()  # the old record is kept


def test_a_sweep_with_stale_runs_refuses_all_and_recomputes_them_on_request(tmp_path: Path):
    specs = [RunSpec(epochs=FAST, device="cpu", seed=s) for s in (0, 1)]
    store = RunStore(tmp_path)
    for s in specs:  # what an older earlyprune wrote: a result.json without a version
        store.write_json(
            s.run_id,
            "result.json",
            {"run_id": s.run_id, "spec": s.to_dict(), "status": "ok", "test_accuracy": 0.5},
        )
    with pytest.raises(SpecError, match="2 runs .e.g. "):
        run_specs(specs, store, workers=1, progress=False)
    (redone,) = run_specs(specs[:1], store, workers=1, progress=False, recompute_stale=True)
    assert redone["numerics_version"] == numerics.NUMERICS_VERSION
    assert redone["test_accuracy"] != 0.5
    assert not numerics.is_current(store.read_result(specs[1].run_id))  # only what was asked


def test_shared_dense_weights_of_older_numerics_are_not_reused(tmp_path: Path) -> None:
    """Pruning at step t reads the dense run's step-t checkpoint: refused when that run is stale."""
    store = RunStore(tmp_path)
    pruned = RunSpec(epochs=FAST, device="cpu", method="magnitude", sparsity=0.5, prune_step=3)
    run(pruned, store, progress=False)
    dense = pruned.dense_spec().run_id
    assert store.path(dense, "step_3.pt").exists()
    make_old(store, dense)
    store.delete(pruned.run_id, "result.json")  # the pruned run itself must be redone
    with pytest.raises(SpecError, match=f"run {dense} .* older earlyprune"):
        run(pruned, store, progress=False)
    assert not store.path(pruned.run_id, "result.json").exists()
    assert numerics.forget_stale(store, [dense]) == 1
    assert not store.path(dense, "step_3.pt").exists()  # old checkpoints go with the result
    assert run(pruned, store, progress=False)["status"] == "ok"


def test_an_unfinished_run_of_older_numerics_starts_afresh(tmp_path: Path) -> None:
    """A resume point without the folder's marker (an older earlyprune's) is never resumed."""
    spec = RunSpec(epochs=FAST, device="cpu")
    store = RunStore(tmp_path)
    store.save_tensors(
        spec.run_id,
        "latest.pt",
        {"model": {"bogus": torch.ones(1)}, "step": 1, "optimizer": {}, "curve": []},
    )
    result = run(spec, store, progress=False)
    assert result["status"] == "ok", result.get("error")  # resuming would have failed
    assert store.read_json(spec.run_id, numerics.MARKER) == {
        "numerics_version": numerics.NUMERICS_VERSION
    }
