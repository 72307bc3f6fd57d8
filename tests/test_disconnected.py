"""Masks that cut every input→output path: an outcome (status ``disconnected``), not a failure.

The paper trains its inverted masks even where they cut the network (Figure 5: chance
accuracy); a sweep must store them as what they are, with their real accuracy, so that a grid
of the paper's ablations completes. The runs are real and tiny: the demo network on the embedded
data for a quarter epoch; inverted SNIP at 95 % empties conv1, conv2 and fc2 of smallcnn.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from earlyprune import cli
from earlyprune.analysis import load_results, summarize, tables, write_report
from earlyprune.analysis import plotting as P
from earlyprune.analysis.verdicts import accuracies
from earlyprune.core.errors import SpecError
from earlyprune.masks.connectivity import is_disconnected_refusal
from earlyprune.run.pipeline import run
from earlyprune.run.spec import RunSpec
from earlyprune.run.store import RunStore
from earlyprune.sweeps.executors.base import record_failure
from earlyprune.sweeps.grid import run_specs, sweep_status

TINY = {"epochs": 0.25, "device": "cpu", "sparsity": 0.95}
CUT = RunSpec(method="snip", ablation="invert", **TINY)
PLAIN = RunSpec(method="snip", **TINY)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as a worker would: 2 threads on a busy 2-core machine crawl
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> RunStore:
    """A sweep (in this process) of SNIP at 95 %, unmodified and inverted."""
    store = RunStore(tmp_path_factory.mktemp("swept") / "store")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_specs([PLAIN, CUT], store, workers=1, progress=False)
    finally:
        torch.set_num_threads(threads)
    return store


def test_a_sweep_trains_a_cut_mask_and_stores_it_as_disconnected(swept: RunStore) -> None:
    cut, plain = swept.read_result(CUT.run_id), swept.read_result(PLAIN.run_id)
    assert plain["status"] == "ok"
    assert cut["status"] == "disconnected" and cut["error"] is None
    # Everything a normal result has, its real (chance-level) accuracy included.
    assert cut["effective_density"] == 0.0 and cut["density"] == pytest.approx(0.05, abs=1e-4)
    assert cut["test_accuracy"] == pytest.approx(0.1, abs=0.05) and cut["curve"]
    assert set(plain) <= set(cut) | {"artifacts"}
    # allow_disconnected stays out of the run id: the sweep's run is the spec's own.
    assert cut["run_id"] == CUT.run_id == CUT.replace(allow_disconnected=True).run_id
    counts = sweep_status([PLAIN, CUT], swept)
    assert (counts["done"], counts["ok"], counts["disconnected"], counts["failed"]) == (2, 1, 1, 0)


def test_sweep_cli_counts_disconnected_runs_as_done(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = tmp_path / "s.toml"
    toml.write_text(
        '[base]\ndataset = "fashion-mnist-mini"\nepochs = 0.25\nmethod = "snip"\n'
        'sparsity = 0.95\n[axes]\nablation = ["invert"]\n[options]\ndense = false\n'
    )
    store = tmp_path / "store"
    assert cli.main(["sweep", "run", str(toml), "--store", str(store), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "failed: " not in out
    assert out.strip().endswith(
        f"1 runs in {store}: 1 done (0 ok, 1 disconnected, 0 diverged), 0 failed, 0 running, "
        "0 pending"
    )


def test_a_single_run_refuses_unless_allow_disconnected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store"
    argv = [
        "run",
        "--dataset",
        "fashion-mnist-mini",
        "--method",
        "snip",
        "--sparsity",
        "0.95",
        "--ablation",
        "invert",
        "--epochs",
        "0.25",
        "--device",
        "cpu",
        "--store",
        str(store),
    ]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no path from input to output" in err
    assert not (store / CUT.run_id / "result.json").exists()
    assert cli.main([*argv, "--allow-disconnected"]) == 0
    out = capsys.readouterr().out
    assert "status=disconnected (no input→output path)  test accuracy" in out
    stored = json.loads((store / CUT.run_id / "result.json").read_text())
    assert stored["status"] == "disconnected" and stored["test_accuracy"] is not None


def test_an_older_sweeps_failed_refusal_is_run_again_without_retry_failed(tmp_path: Path) -> None:
    # What a sweep stored before this status existed: the refusal, recorded failed by run_one.
    store = RunStore(tmp_path / "store")
    with pytest.raises(SpecError) as refused:
        run(CUT, store, progress=False)
    record_failure(CUT, store, refused.value, None)
    old = store.read_result(CUT.run_id)
    assert old["status"] == "failed" and is_disconnected_refusal(old["error"])
    assert not is_disconnected_refusal("RuntimeError: scores are all NaN")
    counts = sweep_status([CUT], store)
    assert (counts["failed"], counts["pending"]) == (0, 1)  # the next sweep trains it
    (result,) = run_specs([CUT], store, workers=1, progress=False)
    assert result["status"] == "disconnected" and result["test_accuracy"] is not None
    assert store.read_result(CUT.run_id) == result


def test_analysis_counts_disconnected_runs_as_outcomes(swept: RunStore, tmp_path: Path) -> None:
    df = load_results(swept.root)
    assert sorted(df["status"]) == ["disconnected", "ok"]
    summary = summarize(df)
    row = summary[summary["ablation"] == "invert"].iloc[0]
    cut = swept.read_result(CUT.run_id)
    # Its accuracy is the mean (the paper's Figure 5 result), counted in n and labelled.
    assert (row["n"], row["n_disconnected"], row["n_failed"]) == (1, 1, 0)
    assert row["mean"] == pytest.approx(cut["test_accuracy"])
    assert f"{100 * cut['test_accuracy']:.1f} (1 disconnected)" in tables(summary)["markdown"]
    acc = accuracies([swept.read_result(CUT.run_id), swept.read_result(PLAIN.run_id)])
    assert acc[("snip", "invert", 0.95)] == [cut["test_accuracy"]]
    page = write_report(swept.root, tmp_path / "report").read_text()
    assert "1 disconnected: their masks cut every input→output path" in page
    assert "Diverged and failed runs" not in page  # not listed as a problem


def test_figures_ring_points_with_disconnected_seeds() -> None:
    fig, (ax,) = P.new_figure(4, 3)
    rows = pd.DataFrame(
        {"sparsity": [0.5, 0.95], "mean": [0.8, 0.1], "std": [0.0, 0.0], "n_disconnected": [0, 2]}
    )
    P.plot_band(ax, P.density_x(rows["sparsity"]), rows, label="SNIP", color="tab:blue")
    P.plot_band(ax, P.density_x(rows["sparsity"]), rows, label="GraSP", color="tab:red")
    labels = ax.get_legend_handles_labels()[1]
    assert labels == ["SNIP", P.DISCONNECTED_LABEL, "GraSP"]  # named once
    ring = ax.lines[1]
    assert np.allclose(ring.get_xdata(), [0.05]) and np.allclose(ring.get_ydata(), [10.0])


def test_a_run_is_recorded_alike_whoever_ran_it(swept: RunStore, tmp_path: Path) -> None:
    """allow_disconnected is the command's permission (every sweep grants it): a run's stored
    spec must not depend on whether a sweep or a single run (or a prerequisite) made it."""
    assert "allow_disconnected" not in PLAIN.replace(allow_disconnected=True).to_dict()
    store = RunStore(tmp_path / "single")
    run(PLAIN, store)  # the same run, made by a single `run` (no permission)
    rid = PLAIN.run_id
    assert store.read_result(rid)["spec"] == swept.read_result(rid)["spec"]
    assert json.loads((store.root / rid / "spec.json").read_text()) == json.loads(
        (swept.root / rid / "spec.json").read_text()
    )
