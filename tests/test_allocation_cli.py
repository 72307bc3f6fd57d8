"""Allocation × placement end to end: `earlyprune run`, a sweep, and the shuffle equivalence.

Runs are a tenth of an epoch of the demo preset (two SGD steps): what is checked is the mask
each run stored, not its accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from earlyprune import cli
from earlyprune.analysis import load_results
from earlyprune.core.errors import SpecError
from earlyprune.methods.allocation import allocate
from earlyprune.run.spec import RunSpec
from earlyprune.run.store import RunStore
from earlyprune.sweeps.grid import expand, run_specs

QUICK = ["--dataset", "fashion-mnist-mini", "--epochs", "0.1", "--device", "cpu"]
SMALLCNN = [(16, 1, 5, 5), (32, 16, 3, 3), (64, 1568), (10, 64)]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def counts(result: dict) -> list[int]:
    """Per-layer kept counts of a stored result (density × size, exact for integers)."""
    dens, numel = result["layer_density"], result["layer_numel"]
    return [round(dens[n] * numel[n]) for n in numel]


def result_of(store: Path, spec: RunSpec) -> dict:
    return json.loads((store / spec.run_id / "result.json").read_text())


@pytest.mark.parametrize("method", ["erk", "er", "uniform", "uniform_plus", "smart_ratio", "lamp"])
def test_baseline_methods_run_end_to_end(method, tmp_path, capsys):
    store = tmp_path / "runs"
    argv = ["run", *QUICK, "--method", method, "--sparsity", "0.9", "--store", str(store)]
    assert cli.main(argv) == 0
    spec = RunSpec(method=method, sparsity=0.9, epochs=0.1)
    result = result_of(store, spec)
    assert result["status"] == "ok" and abs(result["density"] - 0.1) < 1e-12
    if method != "lamp":
        assert counts(result) == allocate(method, SMALLCNN, 10600)
    assert f"{method}  s=90.0%" in capsys.readouterr().out


def test_shuffle_ablation_equals_scorer_allocation_with_random_placement(tmp_path, capsys):
    store = tmp_path / "runs"
    common = [*QUICK, "--sparsity", "0.9", "--store", str(store)]
    assert cli.main(["run", "--method", "snip", "--ablation", "shuffle", *common]) == 0
    assert (
        cli.main(
            ["run", "--method", "random", "--allocation", "snip", "--placement", "random", *common]
        )
        == 0
    )
    shuffled = result_of(
        store, RunSpec(method="snip", ablation="shuffle", sparsity=0.9, epochs=0.1)
    )
    placed = result_of(
        store,
        RunSpec(method="random", allocation="snip", placement="random", sparsity=0.9, epochs=0.1),
    )
    assert counts(shuffled) == counts(placed)
    assert "random[alloc=snip,place=random]  s=90.0%" in capsys.readouterr().out
    uniform = round(0.1 * 16 * 25)  # SNIP's counts are not the random method's uniform ones
    assert counts(placed)[0] != uniform


def test_a_sweep_over_allocation_and_placement_axes(tmp_path):
    specs = expand(
        {"dataset": "fashion-mnist-mini", "epochs": 0.1, "method": "random", "sparsity": 0.9},
        {"allocation": ["erk", "synflow"], "placement": ["random", "magnitude"]},
    )
    assert len(specs) == 1 + 4 and len({s.run_id for s in specs}) == 5
    results = run_specs(specs, RunStore(tmp_path / "runs"), workers=1, progress=False)
    assert all(r["status"] == "ok" for r in results)
    by_alloc: dict[str, list[list[int]]] = {}
    for spec, r in zip(specs, results, strict=True):
        if spec.allocation:
            by_alloc.setdefault(spec.allocation, []).append(counts(r))
    assert by_alloc["erk"] == [allocate("erk", SMALLCNN, 10600)] * 2
    assert len({tuple(c) for c in by_alloc["synflow"]}) == 1  # one allocation, two placements
    # Reports and verdicts tell the compositions apart from the plain method.
    methods = set(load_results(tmp_path / "runs")["method"])
    assert methods == {"dense"} | {
        f"random[alloc={a},place={p}]" for a in ("erk", "synflow") for p in ("random", "magnitude")
    }


def test_bad_allocation_or_placement_is_one_line_and_exit_2(tmp_path, capsys):
    store = tmp_path / "runs"
    for extra, message in (
        (["--allocation", "nope"], "unknown allocation 'nope'; choose one of: er, erk"),
        (["--placement", "nope"], "unknown placement 'nope'; choose one of: magnitude, random"),
        (["--allocation", "erk", "--scope", "layer"], "scope 'layer' and allocation 'erk'"),
    ):
        argv = ["run", *QUICK, "--method", "snip", "--sparsity", "0.9", "--store", str(store)]
        assert cli.main([*argv, *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
    assert not store.exists() or not any(store.iterdir())
    with pytest.raises(SpecError, match="needs a pruning method"):
        RunSpec(allocation="erk")
