"""Training hyperparameters as run fields: ids, checks, schedules, sweeps, and the numbers they give.

The schedule and the loss are checked against hand computations (the warmup rule, label
smoothing written out as (1 − ε)·CE + ε·mean(−log p)); "unset = the preset's value" is checked
by training the same run both ways and comparing every weight.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from earlyprune.core.errors import SpecError
from earlyprune.run.hparams import DENSE_HPARAMS, HPARAMS, effective, make_schedule
from earlyprune.run.pipeline import run
from earlyprune.run.spec import PRESETS, RunSpec
from earlyprune.run.store import RunStore
from earlyprune.sweeps.grid import load_sweep
from earlyprune.train.loop import train
from earlyprune.train.optim import Schedule

SNIP = {"method": "snip", "sparsity": 0.9}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---- identity -------------------------------------------------------------------------------
def test_unset_hyperparameters_hash_nothing_and_set_ones_are_the_id():
    base = RunSpec(**SNIP)
    assert all(getattr(base, h) is None for h in HPARAMS)
    assert base.replace(lr=0.05).run_id != base.run_id
    # One experiment whatever the number's type (TOML int, CLI float, list or tuple).
    assert base.replace(lr=1).run_id == base.replace(lr=1.0).run_id
    assert base.replace(milestones=[1, 2]).run_id == base.replace(milestones=(1.0, 2.0)).run_id
    assert base.replace(milestones=[]).run_id != base.run_id  # "no LR drops" is a setting
    spec = base.replace(milestones=[1, 2], optimizer="adamw", batch_size=64)
    again = RunSpec.from_dict(spec.to_dict())
    assert again == spec and again.run_id == spec.run_id and hash(again) == hash(spec)


def test_dense_run_carries_what_changes_dense_training_but_not_the_rewind_step():
    values = {
        "lr": 0.05,
        "batch_size": 64,
        "momentum": 0.8,
        "weight_decay": 0.0,
        "milestones": (1.0,),
        "gamma": 0.5,
        "optimizer": "sgd",
        "nesterov": True,
        "warmup_epochs": 0.5,
        "label_smoothing": 0.1,
    }
    assert set(values) == set(DENSE_HPARAMS)
    spec = RunSpec(method="ltr", sparsity=0.5, rewind_step=3, epochs=2, **values)
    dense = spec.dense_spec()
    assert {h: getattr(dense, h) for h in DENSE_HPARAMS} == values
    assert dense.rewind_step is None and dense == RunSpec(epochs=2, **values)


BAD = [
    ({"lr": -0.1}, "lr must be a number > 0"),
    ({"lr": 0}, "lr"),
    ({"lr": math.nan}, "lr"),
    ({"lr": "0.1"}, "lr"),
    ({"batch_size": 0}, "batch_size must be an integer ≥ 1"),
    ({"batch_size": 12.5}, "batch_size"),
    ({"momentum": 1.0}, "momentum"),
    ({"weight_decay": -1e-4}, "weight_decay"),
    ({"gamma": 0}, "gamma"),
    ({"milestones": [2, 1]}, "strictly increasing"),
    ({"milestones": [0]}, "milestone"),
    ({"milestones": 80}, "list of epochs"),
    ({"optimizer": "lion"}, "unknown optimizer 'lion'; choose one of: sgd, adam, adamw"),
    ({"nesterov": "yes"}, "nesterov"),
    ({"optimizer": "adam", "momentum": 0.9}, "SGD settings"),
    ({"warmup_epochs": -1}, "warmup_epochs"),
    ({"label_smoothing": 1.0}, "label_smoothing"),
    ({"rewind_step": 5}, "rewind_step applies to ltr"),
    ({"method": "ltr", "rewind_step": -1}, "rewind_step"),
    ({"method": "ltr", "rewind_step": 5, "prune_step": 6}, "not two different values"),
]


@pytest.mark.parametrize(("fields", "needle"), BAD, ids=[str(f) for f, _ in BAD])
def test_bad_values_are_one_spec_error_naming_them(fields, needle):
    with pytest.raises(SpecError, match=needle.replace("(", r"\(")):
        RunSpec(**{**SNIP, **fields})


# ---- schedules ------------------------------------------------------------------------------
class _Batches:
    def __init__(self, n: int) -> None:
        self.n = n

    def steps_per_epoch(self, batch_size: int) -> int:
        return math.ceil(self.n / batch_size)


def test_schedule_defaults_are_the_presets_and_overrides_are_epochs_of_the_run():
    preset = PRESETS.get("resnet20_cifar10")
    data = _Batches(50_000)
    spec = RunSpec(dataset="cifar10", model="resnet20", preset=preset.name, epochs=16)
    sched = make_schedule(spec, preset, data)  # the preset's drops move with the length
    assert (sched.total_steps, sched.steps_per_epoch) == (16 * 391, 391)
    assert sched.milestones == (8 * 391, 12 * 391)
    assert (sched.lr, sched.momentum, sched.weight_decay, sched.gamma) == (0.1, 0.9, 1e-4, 0.1)
    assert (sched.optimizer, sched.nesterov, sched.warmup_steps, sched.label_smoothing) == (
        "sgd",
        False,
        0,
        0.0,
    )
    own = make_schedule(
        spec.replace(batch_size=100, milestones=[4, 10], warmup_epochs=0.5), preset, data
    )
    assert (own.steps_per_epoch, own.milestones, own.warmup_steps) == (500, (2000, 5000), 250)
    assert effective(spec.replace(lr=0.3), preset)["lr"] == 0.3
    with pytest.raises(SpecError, match="milestone.* 20 beyond training"):
        make_schedule(spec.replace(milestones=[4, 20]), preset, data)
    with pytest.raises(SpecError, match="warmup_epochs 17 is longer"):
        make_schedule(spec.replace(warmup_epochs=17), preset, data)
    with pytest.raises(SpecError, match="nesterov needs momentum"):
        make_schedule(spec.replace(nesterov=True, momentum=0.0), preset, data)


def test_warmup_is_linear_from_lr_over_steps_then_the_step_rule():
    s = Schedule(
        total_steps=100,
        steps_per_epoch=10,
        batch_size=8,
        lr=0.4,
        milestones=(50, 80),
        gamma=0.5,
        warmup_steps=4,
    )
    assert [s.lr_at(i) for i in range(6)] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.4, 0.4])
    assert (s.lr_at(49), s.lr_at(50), s.lr_at(80)) == pytest.approx((0.4, 0.2, 0.1))
    plain = Schedule(total_steps=100, steps_per_epoch=10, batch_size=8, lr=0.4, milestones=())
    assert plain.lr_at(0) == 0.4  # no warmup: not even a factor of 1.0


def test_one_step_uses_the_warmup_rate_and_the_smoothed_loss():
    from earlyprune.run.stages import prepare

    bundle = prepare(RunSpec()).bundle.subset(64, 32, seed=0)  # the demo's (cached) data
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))
    ref = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))
    ref.load_state_dict(model.state_dict())
    sched = Schedule(
        total_steps=10,
        steps_per_epoch=2,
        batch_size=32,
        lr=0.5,
        milestones=(),
        momentum=0.9,
        weight_decay=0.0,
        warmup_steps=4,
        label_smoothing=0.2,
    )
    train(model, bundle, sched, seed=3, stop_step=1, progress=False)
    # By hand: the same first batch, loss = (1 − ε)·CE + ε·mean over classes of −log p.
    x, y = next(iter(bundle.train_batches(32, seed=3, epoch=0)))
    logp = torch.log_softmax(ref(x), dim=1)
    eps = 0.2
    loss = ((1 - eps) * -logp.gather(1, y[:, None]).squeeze(1) + eps * -logp.mean(1)).mean()
    loss.backward()
    with torch.no_grad():
        for p in ref.parameters():
            p -= 0.5 / 4 * p.grad  # first step: momentum buffer = gradient, LR = lr · 1/4
    for a, b in zip(model.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


# ---- the numbers ---------------------------------------------------------------------------
def _final(store: RunStore, spec: RunSpec) -> dict:
    return store.load_tensors(spec.run_id, "final.pt")["model"]


def test_spelling_out_the_presets_values_trains_exactly_the_same_network(tmp_path):
    store = RunStore(tmp_path)
    plain = RunSpec(method="snip", sparsity=0.8, epochs=0.5, device="cpu")
    demo = PRESETS.get("demo")
    spelled = plain.replace(
        lr=demo.lr,
        batch_size=demo.batch_size,
        momentum=demo.momentum,
        weight_decay=demo.weight_decay,
        gamma=demo.gamma,
        optimizer="sgd",
        nesterov=False,
        warmup_epochs=0,
        label_smoothing=0,
        milestones=[m / demo.epochs * 0.5 for m in demo.milestones],
    )
    assert spelled.run_id != plain.run_id  # what was asked for is recorded ...
    a, b = run(plain, store, progress=False), run(spelled, store, progress=False)
    assert a["status"] == b["status"] == "ok"
    assert a["test_accuracy"] == b["test_accuracy"]  # ... and gives the same numbers
    fa, fb = _final(store, plain), _final(store, spelled)
    assert all(torch.equal(fa[k], fb[k]) for k in fa)


def test_ltr_rewind_step_rewinds_to_that_dense_checkpoint(tmp_path):
    store = RunStore(tmp_path)
    by_rewind = RunSpec(method="ltr", sparsity=0.8, epochs=0.5, rewind_step=3, device="cpu")
    by_step = by_rewind.replace(rewind_step=None, prune_step=3)
    a = run(by_rewind, store, progress=False)
    assert a["prune_step"] == 3 and a["status"] == "ok"
    dense = by_rewind.dense_spec()
    assert (store.run_dir(dense.run_id) / "step_3.pt").is_file()  # replayed and kept
    b = run(by_step, store, progress=False)
    assert a["test_accuracy"] == b["test_accuracy"]
    fa, fb = _final(store, by_rewind), _final(store, by_step)
    assert all(torch.equal(fa[k], fb[k]) for k in fa)
    with pytest.raises(SpecError, match=r"^rewind step 99 \(ltr's prune step\) is beyond training"):
        run(by_rewind.replace(rewind_step=99), store)


def test_adam_training_keeps_pruned_weights_zero_in_the_stored_network(tmp_path):
    store = RunStore(tmp_path)
    spec = RunSpec(
        method="magnitude", sparsity=0.9, epochs=0.25, optimizer="adamw", lr=1e-3, device="cpu"
    )
    result = run(spec, store, progress=False)
    assert result["status"] == "ok"
    mask = store.load_tensors(spec.run_id, "mask.pt")
    final = _final(store, spec)
    for name, m in mask.items():
        assert int((final[name][~m] != 0).sum()) == 0
        assert int((final[name][m] != 0).sum()) == int(m.sum())


# ---- sweeps ---------------------------------------------------------------------------------
def test_hyperparameters_are_base_keys_and_sweep_axes(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(
        '[base]\ndataset = "fashion-mnist-mini"\nepochs = 2\nbatch_size = 64\n'
        "milestones = [1]\nrewind_step = 4\n"
        '[axes]\nmethod = ["snip", "ltr"]\nsparsity = [0.9]\nlr = [0.05, 0.1]\n'
        'optimizer = ["sgd", "adamw"]\n'
    )
    specs = load_sweep(path).specs
    pruned = [s for s in specs if s.method != "dense"]
    dense = [s for s in specs if s.method == "dense"]
    assert len(pruned) == 8 and len(dense) == 4  # one dense run per (lr, optimizer)
    assert {(s.lr, s.optimizer) for s in dense} == {
        (a, b) for a in (0.05, 0.1) for b in ("sgd", "adamw")
    }
    assert all(s.batch_size == 64 and s.milestones == (1.0,) for s in specs)
    # The shared rewind step is LTR's; the SNIP runs and dense runs do not carry it.
    assert {s.method: s.rewind_step for s in specs} == {"snip": None, "ltr": 4, "dense": None}
    path.write_text('[base]\ndataset = "fashion-mnist-mini"\n[axes]\nlr = [0.1, -1]\n')
    with pytest.raises(SpecError, match="lr must be a number > 0"):
        load_sweep(path)


def test_check_specs_sees_each_hyperparameter_setting(tmp_path):
    from earlyprune.sweeps.executors.base import check_specs

    ok = RunSpec(**SNIP, epochs=2, milestones=[1])
    with pytest.raises(SpecError, match="beyond training"):
        check_specs([ok, ok.replace(milestones=[3])], None, need_data=True)


def test_the_result_records_the_schedule_it_trained_with(tmp_path):
    spec = RunSpec(epochs=0.25, lr=0.05, warmup_epochs=0.125, device="cpu")
    result = run(spec, RunStore(tmp_path), progress=False)
    sched = result["schedule"]
    assert (sched["lr"], sched["warmup_steps"], sched["total_steps"]) == (0.05, 3, 6)
    assert (sched["batch_size"], sched["optimizer"], sched["momentum"]) == (128, "sgd", 0.9)
