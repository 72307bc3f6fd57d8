"""`pipeline.run` end to end on the embedded data: results, masked checkpoints, store reuse,
resumption, determinism, shared dense training, pruning at step t, ablations, failures.

Short checks use a quarter epoch of the demo preset (a dozen SGD steps). Checks across epochs use
``test_tiny``: the small CNN on 320 embedded images (10 steps an epoch, 3 epochs, rewind step 5).
Torch runs on one thread here: on two cores shared with other work, two torch threads spinning
against each other made each run about 20× slower.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from earlyprune.core.errors import DatasetError, SpecError
from earlyprune.methods.api import prune
from earlyprune.methods.scoring import METHODS, Method
from earlyprune.run import device_kinds, stages
from earlyprune.run.pipeline import run
from earlyprune.run.spec import PRESETS, Preset, RunSpec
from earlyprune.run.store import RunStore

FAST = 0.25  # epochs of the demo preset: a dozen steps
TINY = "test_tiny"
SPE = 10  # test_tiny: steps per epoch (320 images, batch 32)
REWIND = 5  # test_tiny: the step the dense run keeps
VOLATILE = ("timings", "created")  # the only result fields allowed to differ between replays


@pytest.fixture(scope="module", autouse=True)
def tiny_preset_one_thread():
    PRESETS.add(
        TINY,
        Preset(
            TINY,
            "smallcnn",
            "fashion-mnist-mini",
            epochs=3,
            batch_size=32,
            lr=0.05,
            milestones=(2,),
            rewind_step=REWIND,
            train_subset=320,
            test_subset=200,
        ),
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    PRESETS.remove(TINY)


def spec(**fields) -> RunSpec:
    # CPU even where a GPU exists: bit-identity is checked, and device is not in the run id.
    return RunSpec(**{"epochs": FAST, "device": "cpu", **fields})


def tiny(**fields) -> RunSpec:
    return RunSpec(**{"preset": TINY, "device": "cpu", **fields})


def go(s: RunSpec, store: RunStore, callbacks=()) -> dict:
    return run(s, store, callbacks=callbacks, progress=False)


def stable(result: dict) -> dict:
    return {k: v for k, v in result.items() if k not in VOLATILE}


def tensors(store: RunStore, s: RunSpec, name: str) -> dict[str, torch.Tensor]:
    found = store.load_tensors(s.run_id, name)
    return found["model"] if name != "mask.pt" else found


def final_weights(store: RunStore, s: RunSpec) -> dict[str, torch.Tensor]:
    return tensors(store, s, "final.pt")


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def kept_pattern(weights: dict[str, torch.Tensor], mask: dict) -> dict[str, torch.Tensor]:
    return {n: weights[n] != 0 for n in mask}


def assert_pruned_zero(weights: dict[str, torch.Tensor], mask: dict) -> None:
    for name, m in mask.items():
        assert torch.count_nonzero(weights[name][~m]) == 0, f"pruned weights of {name} revived"


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "store")


@pytest.fixture
def other(tmp_path) -> RunStore:
    return RunStore(tmp_path / "other")


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


def test_a_full_run_records_everything(store):
    s = spec(method="snip", sparsity=0.9)
    r = go(s, store)
    assert r["run_id"] == s.run_id and r["status"] == "ok" and r["error"] is None
    assert r["spec"]["method"] == "snip" and r["spec"]["prune_step"] == 0
    assert 0.3 < r["test_accuracy"] <= 1.0  # a fraction, and it learned something
    mask = tensors(store, s, "mask.pt")
    n = sum(m.numel() for m in mask.values())
    assert r["density"] == (n - round(0.9 * n)) / n  # exact count, not approximately 10 %
    assert r["layer_density"] == {k: int(m.sum()) / m.numel() for k, m in mask.items()}
    assert r["layer_numel"] == {k: m.numel() for k, m in mask.items()}
    nc = r["neuron_collapse"]
    assert nc["thresholds"][-1] == 1.0 and len(nc["overall"]) == len(nc["thresholds"])
    assert set(nc["per_layer"]) == {k for k, m in mask.items() if m.dim() == 4}
    assert all(0 <= x <= 1 for x in nc["overall"]) and nc["overall"] == sorted(nc["overall"])[::-1]
    total = stages.prepare(s).sched.total_steps
    assert [c["step"] for c in r["curve"]] == [total]
    assert r["steps_trained"] == r["total_steps"] == total
    assert r["curve"][-1]["test_accuracy"] == r["test_accuracy"]
    assert (
        store.read_result(s.run_id) == r and store.read_json(s.run_id, "spec.json") == s.to_dict()
    )
    assert store.load_tensors(s.run_id, "latest.pt") is None  # a finished run keeps no resume point
    assert_pruned_zero(final_weights(store, s), mask)


@pytest.mark.parametrize("method", ["snip", "ltr"])  # ltr: dense weights of step 5, not zero
def test_pruned_weights_are_zero_in_every_checkpoint(store, method):
    s = tiny(method=method, sparsity=0.8)
    seen = []

    def inspect(step, model, _opt, _state):
        mask = tensors(store, s, "mask.pt")
        latest = store.load_tensors(s.run_id, "latest.pt")
        assert latest["step"] == step
        assert_pruned_zero(latest["model"], mask)
        assert_pruned_zero(model.state_dict(), mask)
        seen.append(step)

    r = go(s, store, [inspect])
    assert r["status"] == "ok" and r["prune_step"] == (REWIND if method == "ltr" else 0)
    assert seen == [SPE, 2 * SPE, 3 * SPE]
    assert_pruned_zero(final_weights(store, s), tensors(store, s, "mask.pt"))


def test_a_finished_run_is_served_from_the_store(store, trainings):
    s = spec(method="magnitude", sparsity=0.5)
    first = go(s, store)
    assert len(trainings) == 1
    again = go(s, store)
    assert again == first and len(trainings) == 1


def test_a_killed_run_resumes_and_ends_as_if_never_interrupted(store, other):
    s = tiny(method="snip", sparsity=0.8)

    def kill_after_first_epoch(step, *_):
        if step == SPE:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        go(s, store, [kill_after_first_epoch])
    assert store.read_result(s.run_id) is None and store.claim_state(s.run_id) == "free"
    assert store.load_tensors(s.run_id, "latest.pt")["step"] == SPE
    resumed_at = []
    resumed = go(s, store, [lambda step, *_: resumed_at.append(step)])
    assert resumed_at == [2 * SPE, 3 * SPE]  # the first epoch was not trained again
    straight = go(s, other)
    assert stable(resumed) == stable(straight) and len(resumed["curve"]) == 3
    assert same(final_weights(store, s), final_weights(other, s))


def test_two_stores_give_bit_identical_runs(store, other):
    s = spec(method="grasp", sparsity=0.9, seed=3)
    a, b = go(s, store), go(s, other)
    assert stable(a) == stable(b)
    assert same(tensors(store, s, "mask.pt"), tensors(other, s, "mask.pt"))
    assert same(final_weights(store, s), final_weights(other, s))
    reseeded = s.replace(seed=4)
    go(reseeded, store)
    assert not same(tensors(store, reseeded, "mask.pt"), tensors(store, s, "mask.pt"))


def test_baselines_share_one_dense_training(store, trainings):
    ltr = tiny(method="ltr", sparsity=0.8)  # rewinds to step 5
    mat = ltr.replace(method="magnitude_after_training")
    dense_id = ltr.dense_spec().run_id
    r_ltr, r_mat = go(ltr, store), go(mat, store)
    assert r_ltr["status"] == r_mat["status"] == "ok"
    assert trainings == [
        f"dense {dense_id}",
        f"ltr {ltr.run_id}",
        f"magnitude_after_training {mat.run_id}",
    ]
    assert store.read_result(dense_id)["status"] == "ok"
    assert store.load_tensors(dense_id, f"step_{REWIND}.pt")["step"] == REWIND
    assert (r_ltr["prune_step"], r_mat["prune_step"]) == (REWIND, 0)
    # Both masks are the magnitude mask of the trained dense network.
    expected_model = stages.fresh_model(stages.prepare(ltr))
    expected_model.load_state_dict(tensors(store, ltr.dense_spec(), "final.pt"))
    expected = prune(expected_model, "magnitude", 0.8)
    assert same(tensors(store, ltr, "mask.pt"), expected)
    assert same(tensors(store, mat, "mask.pt"), expected)


def test_pruning_at_step_t_uses_the_dense_runs_step_t_weights(store, trainings):
    s = tiny(method="magnitude", sparsity=0.7, prune_step=2 * SPE)
    dense = s.dense_spec()
    captured = {}

    def capture(step, model, *_):
        if step == 2 * SPE:
            captured.update({k: v.clone() for k, v in model.state_dict().items()})

    go(dense, store, [capture])
    assert store.load_tensors(dense.run_id, f"step_{2 * SPE}.pt") is None  # only step 5 is kept
    assert go(s, store)["status"] == "ok"
    # Step 20 was replayed from the kept step 5 and matches what the dense run went through.
    assert same(tensors(store, dense, f"step_{2 * SPE}.pt"), captured)
    model = stages.fresh_model(stages.prepare(s))
    model.load_state_dict(captured)
    assert same(tensors(store, s, "mask.pt"), prune(model, "magnitude", 0.7))
    assert (
        store.load_tensors(dense.run_id, "latest.pt") is None
    )  # the finished dense run stays clean
    assert trainings == [f"dense {dense.run_id}"] * 2 + [f"magnitude {s.run_id}"]


def test_a_step_not_kept_is_recomputed_from_scratch_bit_identically(store, other):
    s = tiny(method="snip", sparsity=0.8, prune_step=3)  # before the kept step 5
    dense = s.dense_spec()
    go(dense, store)
    go(dense, other)
    kept = tensors(store, dense, f"step_{REWIND}.pt")
    other.delete(dense.run_id, f"step_{REWIND}.pt")
    r = go(s, store)
    assert r["status"] == "ok", r["error"]
    assert go(s, other)["status"] == "ok"
    assert same(tensors(store, s, "mask.pt"), tensors(other, s, "mask.pt"))
    # The kept step, lost in `other`, is recomputed from initialization bit-identically.
    assert go(s.replace(prune_step=REWIND), other)["status"] == "ok"
    assert same(tensors(other, dense, f"step_{REWIND}.pt"), kept)


# ---- ablations ----------------------------------------------------------------------------
def test_invert_keeps_the_complement_in_ranking(store):
    s = spec(method="magnitude", sparsity=0.5)
    inverted = s.replace(ablation="invert")
    go(s, store)
    go(inverted, store)
    plain = tensors(store, s, "mask.pt")
    # At 50 % of an even count without ties, removing the top half keeps exactly the bottom half.
    assert same(tensors(store, inverted, "mask.pt"), {n: ~m for n, m in plain.items()})


def test_shuffle_keeps_per_layer_counts_but_not_positions(store):
    s = spec(method="snip", sparsity=0.9)
    shuffled = s.replace(ablation="shuffle")
    r_plain, r_shuf = go(s, store), go(shuffled, store)
    mask = tensors(store, s, "mask.pt")
    used = kept_pattern(final_weights(store, shuffled), mask)  # the mask it really trained with
    for name, m in mask.items():
        assert int(used[name].sum()) == int(m.sum()), name
        assert not torch.equal(used[name], m), name
    assert r_shuf["layer_density"] == r_plain["layer_density"]
    assert r_shuf["density"] == r_plain["density"]


def test_reinit_changes_the_weights_not_the_mask(store):
    s = spec(method="snip", sparsity=0.9)
    reinit = s.replace(ablation="reinit")
    go(s, store)
    go(reinit, store)
    mask = tensors(store, s, "mask.pt")
    assert same(tensors(store, reinit, "mask.pt"), mask)
    assert same(kept_pattern(final_weights(store, reinit), mask), mask)  # trained with that mask
    assert not torch.equal(
        final_weights(store, s)["conv1.weight"], final_weights(store, reinit)["conv1.weight"]
    )


def test_init_normal_uses_its_own_dense_run(store):
    s = tiny(method="magnitude", sparsity=0.5, prune_step=3, ablation="init_normal")
    he_dense = tiny()
    assert go(s, store)["status"] == "ok"
    normal_dense = s.dense_spec()
    assert normal_dense.init == "normal" and normal_dense.run_id != he_dense.run_id
    assert store.read_result(normal_dense.run_id)["status"] == "ok"
    assert he_dense.run_id not in store.run_ids()
    assert store.read_json(normal_dense.run_id, "spec.json")["init"] == "normal"


# ---- failures -----------------------------------------------------------------------------
@pytest.fixture
def diverging_preset():
    demo = PRESETS.get("demo")
    PRESETS.add("test_diverging", dataclasses.replace(demo, name="test_diverging", lr=1e8))
    yield "test_diverging"
    PRESETS.remove("test_diverging")


def test_a_diverging_run_is_recorded_not_raised(store, diverging_preset, trainings):
    s = spec(preset=diverging_preset)
    r = go(s, store)
    assert r["status"] == "diverged" and r["test_accuracy"] is None
    assert store.read_result(s.run_id)["status"] == "diverged"
    assert store.load_tensors(s.run_id, "final.pt") is None
    assert go(s, store) == r and len(trainings) == 1  # not retried by default
    # A run pruned at step t of a diverged dense run fails, naming it.
    pruned = spec(preset=diverging_preset, method="random", sparsity=0.5, prune_step=2)
    r2 = go(pruned, store)
    assert r2["status"] == "failed" and s.run_id in r2["error"]


@pytest.fixture
def exploding_method():
    def prepare(model, batch, seed):
        raise RuntimeError("scorer exploded on purpose")

    METHODS.add("test_exploding", Method("test_exploding", prepare))
    yield "test_exploding"
    METHODS.remove("test_exploding")


def test_a_run_whose_scorer_raises_is_recorded_failed(store, exploding_method, trainings):
    s = spec(method=exploding_method, sparsity=0.5)
    r = go(s, store)
    assert r["status"] == "failed" and r["test_accuracy"] is None
    # The message, then where it was raised (the deepest frame outside torch: this file).
    assert r["error"].startswith("RuntimeError: scorer exploded on purpose (at ")
    assert r["error"].endswith(")") and "test_pipeline.py, line " in r["error"]
    assert store.read_result(s.run_id) == r and trainings == []
    assert store.claim_state(s.run_id) == "free"
    assert go(s, store) == r  # served as stored
    METHODS.add(exploding_method, METHODS.get("random"), replace=True)  # "fixed" by the user
    assert go(s, store) == r
    assert run(s, store, progress=False, retry_failed=True)["status"] == "ok"


USER_MISTAKES = [
    {"method": "snip", "sparsity": 0.5, "prune_step": 100_000},
    {"preset": TINY, "method": "ltr", "sparsity": 0.5},  # default rewind step 5 > 3 steps
    {"method": "snip", "sparsity": 0.5, "device": "cuda:99"},
    {"method": "snip", "sparsity": 0.5, "device": "tpu-ish"},
]


@pytest.mark.parametrize("fields", USER_MISTAKES, ids=[str(f) for f in USER_MISTAKES])
def test_mistakes_found_after_loading_data_raise_before_writing(store, fields):
    with pytest.raises(SpecError):
        go(spec(**fields), store)
    assert not store.root.exists()


@pytest.mark.parametrize(
    "fields",
    [
        {"method": "sniip", "sparsity": 0.5},
        {"dataset": "cifar11"},
        {"method": "snip", "sparsity": 1.0},
    ],
)
def test_mistakes_in_the_spec_raise_before_any_run(store, fields):
    with pytest.raises(SpecError):
        go(spec(**fields), store)
    assert not store.root.exists()


def test_missing_data_files_raise_before_writing(store, tmp_path):
    s = RunSpec(dataset="mnist", model="lenet_300_100", preset="lenet_mnist", epochs=0.01)
    with pytest.raises(DatasetError, match="not found"):
        run(s, store, data_root=str(tmp_path / "empty"), progress=False)
    assert not store.root.exists()


def test_a_gpu_index_that_is_not_there_is_a_user_mistake(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert device_kinds.resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(SpecError, match="only 1 CUDA device"):
        device_kinds.resolve_device("cuda:1")


def test_a_result_from_another_preset_definition_is_refused(tmp_path):
    """Run ids hash the preset's name; changed hyperparameters must not be served silently."""
    import json as _json

    from earlyprune.core.errors import SpecError as _SpecError
    from earlyprune.sweeps.grid import run_specs

    spec = RunSpec(epochs=0.25, device="cpu")
    store = RunStore(tmp_path)
    result = run(spec, store, progress=False)
    assert result["preset"]["name"] == "demo"
    assert run(spec, store)["run_id"] == spec.run_id  # unchanged preset: served
    path = tmp_path / spec.run_id / "result.json"
    stale = _json.loads(path.read_text())
    stale["preset"]["lr"] = 123.0
    path.write_text(_json.dumps(stale))
    with pytest.raises(_SpecError, match="another definition of preset 'demo'"):
        run(spec, store)
    with pytest.raises(_SpecError, match="another definition"):
        run_specs([spec], store, workers=1, progress=False)
