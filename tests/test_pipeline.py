"""`pipeline.run` end to end on the embedded data: results, masked checkpoints, store reuse,
resumption, determinism, shared dense training, pruning at step t, ablations, failures.

Runs use fractions of the demo preset (0.25 epoch = 16 SGD steps, ≈ 0.2 s on 2 cores).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from earlyprune import stages
from earlyprune.api import prune
from earlyprune.errors import DatasetError, SpecError
from earlyprune.pipeline import run
from earlyprune.scoring import METHODS, Method
from earlyprune.spec import PRESETS, RunSpec
from earlyprune.store import RunStore

FAST = 0.25  # epochs of the demo preset: 16 steps
SPE = 63  # demo steps per epoch (4,000 images, batch 64)
VOLATILE = ("timings", "created")  # the only result fields allowed to differ between replays


def spec(**fields) -> RunSpec:
    return RunSpec(**{"epochs": FAST, **fields})


def go(s: RunSpec, store: RunStore, callbacks=()) -> dict:
    return run(s, store, callbacks=callbacks, progress=False)


def stable(result: dict) -> dict:
    return {k: v for k, v in result.items() if k not in VOLATILE}


def final_weights(store: RunStore, s: RunSpec) -> dict[str, torch.Tensor]:
    return store.load_tensors(s.run_id, "final.pt")["model"]


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
    assert 0.0 <= r["test_accuracy"] <= 1.0 and r["test_accuracy"] > 0.3  # it learned something
    mask = store.load_tensors(s.run_id, "mask.pt")
    n = sum(m.numel() for m in mask.values())
    assert r["density"] == (n - round(0.9 * n)) / n  # exact count, not approximately 10 %
    assert r["layer_density"] == {k: int(m.sum()) / m.numel() for k, m in mask.items()}
    assert r["layer_numel"] == {k: m.numel() for k, m in mask.items()}
    nc = r["neuron_collapse"]
    assert nc["thresholds"][-1] == 1.0 and len(nc["overall"]) == len(nc["thresholds"])
    assert set(nc["per_layer"]) == {k for k, m in mask.items() if m.dim() == 4}
    assert all(0 <= x <= 1 for x in nc["overall"]) and nc["overall"] == sorted(nc["overall"])[::-1]
    assert [c["step"] for c in r["curve"]] == [16] and r["steps_trained"] == r["total_steps"] == 16
    assert r["curve"][-1]["test_accuracy"] == r["test_accuracy"]
    assert store.read_result(s.run_id) == r and store.read_json(s.run_id, "spec.json") == s.to_dict()
    assert store.load_tensors(s.run_id, "latest.pt") is None  # a finished run keeps no resume point
    assert_pruned_zero(final_weights(store, s), mask)


@pytest.mark.parametrize("fields", [{"method": "snip"}, {"method": "ltr", "prune_step": 5}])
def test_pruned_weights_are_zero_in_every_checkpoint(store, fields):
    s = RunSpec(sparsity=0.8, epochs=2.0, **fields)
    seen = []

    def inspect(step, model, _opt, _state):
        mask = store.load_tensors(s.run_id, "mask.pt")
        latest = store.load_tensors(s.run_id, "latest.pt")
        assert latest["step"] == step
        assert_pruned_zero(latest["model"], mask)
        assert_pruned_zero(model.state_dict(), mask)
        seen.append(step)

    assert go(s, store, [inspect])["status"] == "ok"
    assert seen == [SPE, 2 * SPE]
    assert_pruned_zero(final_weights(store, s), store.load_tensors(s.run_id, "mask.pt"))


def test_a_finished_run_is_served_from_the_store(store, trainings):
    s = spec(method="magnitude", sparsity=0.5)
    first = go(s, store)
    assert len(trainings) == 1
    again = go(s, store)
    assert again == first and len(trainings) == 1


def test_a_killed_run_resumes_and_ends_as_if_never_interrupted(store, other):
    s = RunSpec(method="snip", sparsity=0.8, epochs=3.0)

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
    assert stable(resumed) == stable(straight)
    for name, w in final_weights(other, s).items():
        assert torch.equal(final_weights(store, s)[name], w), name


def test_two_stores_give_bit_identical_runs(store, other):
    s = spec(method="grasp", sparsity=0.9, seed=3)
    a, b = go(s, store), go(s, other)
    assert stable(a) == stable(b)
    ma, mb = store.load_tensors(s.run_id, "mask.pt"), other.load_tensors(s.run_id, "mask.pt")
    assert all(torch.equal(ma[n], mb[n]) for n in ma)
    fa, fb = final_weights(store, s), final_weights(other, s)
    assert all(torch.equal(fa[n], fb[n]) for n in fa)
    other_seed = s.replace(seed=4)
    go(other_seed, store)
    assert not torch.equal(store.load_tensors(other_seed.run_id, "mask.pt")["0.weight"], ma["0.weight"])


def test_baselines_share_one_dense_training(store, trainings):
    ltr = RunSpec(method="ltr", sparsity=0.8, epochs=0.5)  # rewinds to the demo's step 20
    mat = ltr.replace(method="magnitude_after_training")
    dense_id = ltr.dense_spec().run_id
    assert go(ltr, store)["status"] == "ok" and go(mat, store)["status"] == "ok"
    assert trainings == [f"dense {dense_id}", f"ltr {ltr.run_id}", f"magnitude_after_training {mat.run_id}"]  # fmt: skip
    assert store.read_result(dense_id)["status"] == "ok"
    assert store.load_tensors(dense_id, "step_20.pt")["step"] == 20
    # Both masks are the magnitude mask of the trained dense network.
    assert go(ltr, store)["prune_step"] == 20 and go(mat, store)["prune_step"] == 0
    m1, m2 = (store.load_tensors(x.run_id, "mask.pt") for x in (ltr, mat))
    assert all(torch.equal(m1[n], m2[n]) for n in m1)


def test_pruning_at_step_t_uses_the_dense_runs_step_t_weights(store, trainings):
    s = RunSpec(method="magnitude", sparsity=0.7, prune_step=SPE, epochs=2.0)
    captured = {}

    def capture(step, model, *_):
        if step == SPE:
            captured.update({k: v.clone() for k, v in model.state_dict().items()})

    dense = s.dense_spec()
    go(dense, store, [capture])  # step 63 is not kept (only the rewind step 20 is)
    assert store.load_tensors(dense.run_id, f"step_{SPE}.pt") is None
    assert go(s, store)["status"] == "ok"
    recomputed = store.load_tensors(dense.run_id, f"step_{SPE}.pt")["model"]
    assert all(torch.equal(recomputed[k], v) for k, v in captured.items())
    model = stages.fresh_model(stages.prepare(s))
    model.load_state_dict(captured)
    expected = prune(model, "magnitude", 0.7)
    mask = store.load_tensors(s.run_id, "mask.pt")
    assert all(torch.equal(mask[n], expected[n]) for n in mask)
    assert store.load_tensors(dense.run_id, "latest.pt") is None  # the finished dense run stays clean


def test_a_step_not_kept_is_recomputed_from_scratch_bit_identically(store, other):
    s = spec(method="snip", sparsity=0.8, prune_step=10, epochs=0.5)
    dense_id = s.dense_spec().run_id
    go(s.dense_spec(), store)
    go(s.dense_spec(), other)
    kept = store.load_tensors(dense_id, "step_20.pt")["model"]
    other.delete(dense_id, "step_20.pt")
    # Step 10 has no earlier kept step: recomputed from initialization.
    assert go(s, store)["status"] == "ok" and go(s, other)["status"] == "ok"
    assert all(
        torch.equal(store.load_tensors(s.run_id, "mask.pt")[n], m)
        for n, m in other.load_tensors(s.run_id, "mask.pt").items()
    )
    # Step 20 again, now in the store that lost it.
    assert go(s.replace(prune_step=20), other)["status"] == "ok"
    again = other.load_tensors(dense_id, "step_20.pt")["model"]
    assert all(torch.equal(again[k], v) for k, v in kept.items())


# ---- ablations ----------------------------------------------------------------------------
def test_invert_keeps_the_complement_in_ranking(store):
    s = spec(method="magnitude", sparsity=0.5)
    go(s, store)
    go(s.replace(ablation="invert"), store)
    plain = store.load_tensors(s.run_id, "mask.pt")
    inverted = store.load_tensors(s.replace(ablation="invert").run_id, "mask.pt")
    # At 50 % of an even count without ties, removing the top half keeps exactly the bottom half.
    assert all(torch.equal(inverted[n], ~plain[n]) for n in plain)


def test_shuffle_keeps_per_layer_counts_but_not_positions(store):
    s = spec(method="snip", sparsity=0.9)
    shuffled = s.replace(ablation="shuffle")
    r_plain, r_shuf = go(s, store), go(shuffled, store)
    mask = store.load_tensors(s.run_id, "mask.pt")
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
    mask = store.load_tensors(s.run_id, "mask.pt")
    assert all(torch.equal(store.load_tensors(reinit.run_id, "mask.pt")[n], m) for n, m in mask.items())
    a, b = final_weights(store, s), final_weights(store, reinit)
    used = kept_pattern(b, mask)
    assert all(torch.equal(used[n], mask[n]) for n in mask)
    assert not torch.equal(a["0.weight"], b["0.weight"])


def test_init_normal_uses_its_own_dense_run(store):
    s = spec(method="magnitude", sparsity=0.5, prune_step=10, ablation="init_normal")
    he_dense = spec()
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
    pruned = spec(preset=diverging_preset, method="random", sparsity=0.5, prune_step=8)
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
    assert r["error"] == "RuntimeError: scorer exploded on purpose"
    assert store.read_result(s.run_id) == r and trainings == []
    assert store.claim_state(s.run_id) == "free"
    assert go(s, store) == r  # served as stored
    METHODS.add(exploding_method, METHODS.get("random"), replace=True)  # "fixed" by the user
    assert go(s, store) == r
    assert run(s, store, progress=False, retry_failed=True)["status"] == "ok"


USER_MISTAKES = [
    {"method": "snip", "sparsity": 0.5, "prune_step": 17},  # 16 steps of training
    {"method": "ltr", "sparsity": 0.5},  # default rewind step 20 > 16
    {"method": "snip", "sparsity": 0.5, "device": "cuda:7"},
    {"method": "snip", "sparsity": 0.5, "device": "tpu-ish"},
]


@pytest.mark.parametrize("fields", USER_MISTAKES, ids=[str(f) for f in USER_MISTAKES])
def test_mistakes_found_after_loading_data_raise_before_writing(store, fields):
    with pytest.raises(SpecError):
        go(spec(**fields), store)
    assert not store.root.exists()


@pytest.mark.parametrize(
    "fields",
    [{"method": "sniip", "sparsity": 0.5}, {"dataset": "cifar11"}, {"method": "snip", "sparsity": 1.0}],
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
