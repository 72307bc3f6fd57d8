"""IMP with rewinding: the paper's grid exactly, one training per level, nested masks, specs.

Runs use ``test_imp``: the small CNN on 160 embedded images, one epoch of 5 steps, rewind step 2.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from earlyprune import cli
from earlyprune.core.errors import SpecError
from earlyprune.methods.api import prune
from earlyprune.run import stages
from earlyprune.run.imp import previous_spec
from earlyprune.run.pipeline import run
from earlyprune.run.spec import PRESETS, Preset, RunSpec, canonical_json, imp_sparsity
from earlyprune.run.store import RunStore
from earlyprune.sweeps.executors.base import with_prerequisites
from earlyprune.sweeps.grid import expand, run_specs

PRESET = "test_imp"
REWIND = 2


@pytest.fixture(scope="module", autouse=True)
def tiny_preset_one_thread():
    PRESETS.add(
        PRESET,
        Preset(
            PRESET,
            "smallcnn",
            "fashion-mnist-mini",
            epochs=1,
            batch_size=32,
            lr=0.05,
            milestones=(),
            rewind_step=REWIND,
            train_subset=160,
            test_subset=100,
        ),
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    PRESETS.remove(PRESET)


def imp(k: int, **fields) -> RunSpec:
    return RunSpec(**{"preset": PRESET, "device": "cpu", "method": "imp", "levels": k, **fields})


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "store")


@pytest.fixture
def trainings(monkeypatch) -> list[str]:
    """Labels ("<method> <run id>") of every training loop started, in order."""
    calls: list[str] = []
    real = stages.train

    def counting(*args, desc: str = "train", **kwargs):
        calls.append(desc)
        return real(*args, desc=desc, **kwargs)

    monkeypatch.setattr(stages, "train", counting)
    return calls


def mask_of(store: RunStore, spec: RunSpec) -> dict[str, torch.Tensor]:
    return store.load_tensors(spec.run_id, "mask.pt")


def test_levels_land_on_the_grid_reuse_the_previous_level_and_nest(store, trainings):
    dense = imp(1).dense_spec()
    assert run(imp(3), store, progress=False)["status"] == "ok"
    # Level 3 from an empty store: the dense run, then levels 1, 2, 3 — each trained once.
    assert trainings == [f"dense {dense.run_id}", *(f"imp {imp(k).run_id}" for k in (1, 2, 3))]
    assert run(imp(4), store, progress=False)["status"] == "ok"
    assert trainings[4:] == [f"imp {imp(4).run_id}"]  # level 4 reuses the stored level 3
    assert run(imp(4), store, progress=False)["status"] == "ok" and len(trainings) == 5
    previous = {n: torch.ones_like(m) for n, m in mask_of(store, imp(1)).items()}
    for k in range(1, 5):
        mask = mask_of(store, imp(k))
        total = sum(m.numel() for m in mask.values())
        removed = total - sum(int(m.sum()) for m in mask.values())
        assert removed == round((1 - 0.8**k) * total)  # the paper's grid, exactly
        assert all(bool((mask[n] <= previous[n]).all()) for n in mask)  # nested
        previous = mask
        # Pruned weights stay zero in the stored final weights.
        final = store.load_tensors(imp(k).run_id, "final.pt")["model"]
        assert all(int(torch.count_nonzero(final[n][~m])) == 0 for n, m in mask.items())


def test_a_level_removes_the_smallest_survivors_of_the_previous_level(store):
    run(imp(2), store, progress=False)
    # Level 1 is LTR's mask at 20 %: magnitude of the trained dense network.
    model = stages.fresh_model(stages.prepare(imp(1)))
    model.load_state_dict(store.load_tensors(imp(1).dense_spec().run_id, "final.pt")["model"])
    expected = prune(model, "magnitude", 0.2)
    assert all(torch.equal(mask_of(store, imp(1))[n], m) for n, m in expected.items())
    # Level 2, by hand: rank level 1's trained survivors by |w| with numpy, drop the smallest.
    weights = store.load_tensors(imp(1).run_id, "final.pt")["model"]
    m1 = mask_of(store, imp(1))
    names = list(m1)
    mags = np.concatenate([weights[n].abs().flatten().numpy() for n in names])
    alive = np.concatenate([m1[n].flatten().numpy() for n in names])
    n_remove = round(imp_sparsity(2) * alive.size) - int((~alive).sum())
    order = np.argsort(np.where(alive, mags, -1.0), kind="stable")
    keep = alive.copy()
    keep[order[int((~alive).sum()) : int((~alive).sum()) + n_remove]] = False
    got = np.concatenate([mask_of(store, imp(2))[n].flatten().numpy() for n in names])
    assert (got == keep).all()


def test_survivors_are_rewound_to_the_rewind_step(store, monkeypatch):
    starts = []
    real = stages.train

    def spy(model, *args, **kwargs):
        starts.append({n: p.detach().clone() for n, p in model.state_dict().items()})
        return real(model, *args, **kwargs)

    monkeypatch.setattr(stages, "train", spy)
    run(imp(1), store, progress=False)
    step = store.load_tensors(imp(1).dense_spec().run_id, f"step_{REWIND}.pt")["model"]
    mask = mask_of(store, imp(1))
    level_start = starts[-1]  # the dense run first, then level 1's retraining
    for name, m in mask.items():
        assert torch.equal(level_start[name][m], step[name][m])  # survivors: the step-t weights
    # prune_step 0: the original lottery ticket, rewound to the initialization.
    zero = imp(1, prune_step=0)
    run(zero, store, progress=False)
    init = stages.fresh_model(stages.prepare(zero)).state_dict()
    assert all(torch.equal(starts[-1][n][m], init[n][m]) for n, m in mask_of(store, zero).items())


def test_spec_sparsity_follows_the_level_and_a_grid_sparsity_gives_the_level():
    assert imp(3).sparsity == imp_sparsity(3) == 0.488
    assert RunSpec(method="imp", sparsity=0.488).levels == 3
    assert RunSpec(method="imp", sparsity=0.488).run_id == RunSpec(method="imp", levels=3).run_id
    half = RunSpec(method="imp", levels=2, level_fraction=0.5)
    assert half.sparsity == 0.75 and "level_fraction" in canonical_json(half)
    assert "levels" in canonical_json(imp(2)) and imp(2).run_id != imp(3).run_id
    for bad, message in [
        ({"method": "imp", "sparsity": 0.5}, "not one: give levels"),
        ({"method": "imp", "levels": 2, "sparsity": 0.5}, "not both"),
        ({"method": "imp", "levels": 0}, "levels must be an integer"),
        ({"method": "snip", "sparsity": 0.5, "levels": 2}, "levels is for method 'imp'"),
        ({"method": "imp", "levels": 1, "level_fraction": 1.5}, "level_fraction"),
    ]:
        with pytest.raises(SpecError, match=message):
            RunSpec(**bad)


def test_a_sweep_over_levels_chains_them_and_costs_one_training_per_level(tmp_path, trainings):
    specs = expand({"preset": PRESET, "device": "cpu", "method": "imp"}, {"levels": [3, 1, 2]})
    assert previous_spec(imp(3)) == imp(2) and previous_spec(imp(1)) == imp(1).dense_spec()
    # A sweep of level 3 alone still holds its chain.
    assert {s.run_id for s in with_prerequisites([imp(3)])} == {s.run_id for s in specs}
    results = run_specs(specs, RunStore(tmp_path / "s"), workers=1, progress=False)
    assert [r["status"] for r in results] == ["ok"] * 4
    assert sorted(trainings) == sorted(
        [f"dense {imp(1).dense_spec().run_id}", *(f"imp {imp(k).run_id}" for k in (1, 2, 3))]
    )


def test_cli_imp_levels(tmp_path, capsys):
    argv = [
        "run",
        "--dataset",
        "fashion-mnist-mini",
        "--preset",
        PRESET,
        "--device",
        "cpu",
        "--method",
        "imp",
        "--levels",
        "2",
        "--store",
        str(tmp_path / "r"),
    ]
    assert cli.main(argv) == 0
    assert "imp  s=36.0%" in capsys.readouterr().out
    assert cli.main(argv[:-4] + ["--store", str(tmp_path / "r")]) == 2
    assert "--sparsity is required (or --levels)" in capsys.readouterr().err


def test_a_level_that_cuts_every_path_is_refused_like_any_method(store):
    # 11 of 106 k weights kept, chosen by trained magnitude: some layer keeps none.
    cut = imp(1, level_fraction=0.9999)
    with pytest.raises(SpecError, match="no path from input to output"):
        run(cut, store, progress=False)
    assert store.read_result(cut.run_id) is None  # refused, not stored as failed
    # Trained as the paper does when allowed: an outcome labelled as what it is.
    allowed = run(cut.replace(allow_disconnected=True), store, progress=False)
    assert allowed["status"] == "disconnected" and allowed["test_accuracy"] is not None


def test_the_original_lottery_ticket_runs_its_dense_network_first(store):
    # prune_step 0 needs no dense checkpoint at step t, but level 1 prunes the trained network.
    assert run(imp(2, prune_step=0), store, progress=False)["status"] == "ok"
    assert store.read_result(imp(1).dense_spec().run_id)["status"] == "ok"
