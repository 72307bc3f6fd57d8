"""Sparse training (static, SET, RigL) and gradual magnitude pruning (GMP).

The guarantees of issue 16: exact per-layer counts at every update (SET/RigL) and the GMP schedule
followed exactly; pruned weights zero in every checkpoint; RigL's mask moves, then stops after
T_end; resuming is bit-identical; RigL's regrowth equals a hand-computed top-k of |gradient| among
inactive weights; only the ablations that make sense are accepted.

Hand computations use plain Python lists and ``sorted``, independent of the torch code under test.
Runs use the small CNN on 320 embedded images (10 steps an epoch, 3 epochs).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from earlyprune.cli import main
from earlyprune.core.errors import SpecError
from earlyprune.masks.mask import full_mask, prunable
from earlyprune.methods.sparse_training import (
    SPARSE_TRAINERS,
    MaskUpdater,
    UpdateSchedule,
    initial_mask,
    layer_counts,
    resolve_schedule,
)
from earlyprune.methods.sparse_training.dropgrow import drop_and_grow
from earlyprune.run.pipeline import run
from earlyprune.run.spec import PRESETS, Preset, RunSpec, canonical_json
from earlyprune.run.stages import prepare
from earlyprune.run.store import RunStore
from earlyprune.train.loop import Schedule, make_optimizer, train

TINY = "test_sparse_tiny"
SPE = 10


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
            rewind_step=5,
            train_subset=320,
            test_subset=200,
        ),
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    PRESETS.remove(TINY)


def tiny(**fields) -> RunSpec:
    return RunSpec(**{"preset": TINY, "device": "cpu", **fields})


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "store")


# ---- schedules ------------------------------------------------------------------------------
def test_drop_fraction_decays_by_cosine_and_gmp_follows_the_cubic():
    s = UpdateSchedule(start=0, end=1000, interval=100, drop_fraction=0.3)
    assert s.drop_fraction_at(0) == pytest.approx(0.3)
    assert s.drop_fraction_at(500) == pytest.approx(0.15)
    assert s.drop_fraction_at(250) == pytest.approx(0.15 * (1 + math.cos(math.pi / 4)))
    assert s.drop_fraction_at(1000) == pytest.approx(0.0, abs=1e-12)
    g = UpdateSchedule(start=200, end=600, interval=100, initial_sparsity=0.1, final_sparsity=0.9)
    for t in (200, 300, 400, 600, 900):
        p = min((t - 200) / 400, 1.0)
        assert g.sparsity_at(t) == pytest.approx(0.9 + (0.1 - 0.9) * (1 - p) ** 3)
    assert [t for t in range(1000) if g.is_update(t)] == [200, 300, 400, 500, 600]


def test_defaults_fill_in_from_the_training_length():
    rigl = resolve_schedule(RunSpec(method="rigl", sparsity=0.9), 62560)  # ResNet-20, 160 epochs
    assert (rigl.start, rigl.end, rigl.interval, rigl.drop_fraction) == (0, 46920, 100, 0.3)
    gmp = resolve_schedule(RunSpec(method="gmp", sparsity=0.9), 62560)
    assert (gmp.start, gmp.end, gmp.interval, gmp.initial_sparsity) == (12512, 46920, 100, 0.0)
    short = resolve_schedule(RunSpec(method="set", sparsity=0.9), 72)  # the demo preset
    assert (short.end, short.interval) == (54, 5)  # ten updates, not none
    set_ = resolve_schedule(
        RunSpec(method="set", sparsity=0.9, update_interval=7, update_end=40, drop_fraction=0.5), 72
    )
    assert (set_.end, set_.interval, set_.drop_fraction) == (40, 7, 0.5)


# ---- the starting mask and one drop-and-grow --------------------------------------------------
def test_starting_mask_has_exact_counts_and_random_positions():
    model = nn.Sequential(nn.Linear(10, 7), nn.ReLU(), nn.Linear(7, 3))
    counts = layer_counts(model, 0.8)
    total = 70 + 21
    assert sum(counts.values()) == total - round(0.8 * total)
    m0, m1 = initial_mask(model, 0.8, seed=0), initial_mask(model, 0.8, seed=1)
    assert {n: int(m.sum()) for n, m in m0.items()} == counts
    assert any(not torch.equal(m0[n], m1[n]) for n in m0)
    assert all(torch.equal(m0[n], initial_mask(model, 0.8, seed=0)[n]) for n in m0)
    # ERK by default: the small layer keeps a larger share than under the uniform allocation.
    uniform = layer_counts(model, 0.8, "uniform")
    assert sum(uniform.values()) == sum(counts.values())
    assert counts["2.weight"] / 21 > uniform["2.weight"] / 21


def test_the_starting_mask_takes_the_runs_allocation():
    from earlyprune.methods.sparse_training import starting_mask

    model = nn.Sequential(nn.Linear(10, 7), nn.ReLU(), nn.Linear(7, 3))
    s = RunSpec(method="rigl", sparsity=0.8, allocation="uniform")
    got = {n: int(m.sum()) for n, m in starting_mask(s, model).items()}
    assert got == layer_counts(model, 0.8, "uniform") != layer_counts(model, 0.8)


def _hand_drop_grow(mask, weight, score, k):
    """Drop the k smallest |w| among active (earlier first on ties), grow the k largest scores
    among the positions not kept (earlier first on ties)."""
    m, w, s = mask.flatten().tolist(), weight.flatten().tolist(), score.flatten().tolist()
    active = [i for i in range(len(m)) if m[i]]
    dropped = sorted(active, key=lambda i: (abs(w[i]), i))[:k]
    kept = set(active) - set(dropped)
    cand = [i for i in range(len(m)) if i not in kept]
    grown = sorted(cand, key=lambda i: (-s[i], i))[:k]
    return sorted(kept | set(grown))


@pytest.mark.parametrize("seed", range(5))
def test_drop_and_grow_matches_a_hand_computation(seed):
    gen = torch.Generator().manual_seed(seed)
    mask = torch.rand(6, 5, generator=gen) < 0.4
    weight = torch.randn(6, 5, generator=gen) * mask
    weight[0, 0] = weight[0, 1] = 0.5 * mask[0, 0]  # a tie among the active ones, sometimes
    score = torch.randn(6, 5, generator=gen).abs().round(decimals=1)  # ties in the growth score
    k = int(mask.sum()) // 3
    new = drop_and_grow(mask, weight, score, k)
    assert int(new.sum()) == int(mask.sum())
    assert torch.nonzero(new.flatten()).flatten().tolist() == _hand_drop_grow(
        mask, weight, score, k
    )


# ---- inside the training loop -------------------------------------------------------------------
class Recording(MaskUpdater):
    """Records, at every update step, what the update saw and what it produced."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[dict] = []

    def __call__(self, step, model, optimizer, live):
        if not self.schedule.is_update(step):
            return super().__call__(step, model, optimizer, live)
        params = prunable(model)
        before = {
            "step": step,
            "mask": {n: m.clone() for n, m in self.mask.items()},
            "w": {n: params[n].detach().clone() for n in self.mask},
            "g": {n: params[n].grad.clone() for n in self.mask},
        }
        skip = super().__call__(step, model, optimizer, live)
        before["new"] = {n: m.clone() for n, m in self.mask.items()}
        before["live"] = {n: live[n].clone() for n in self.mask}
        before["w_after"] = {n: params[n].detach().clone() for n in self.mask}
        before["momentum"] = {
            n: optimizer.state[params[n]]["momentum_buffer"].clone()
            for n in self.mask
            if "momentum_buffer" in optimizer.state.get(params[n], {})
        }
        self.seen.append(before)
        return skip


class TinyMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.l1, self.l2 = nn.Linear(12, 8), nn.Linear(8, 4)

    def forward(self, x):
        return self.l2(F.relu(self.l1(x.flatten(1))))


class ToyBundle:
    """A tiny in-memory dataset with the DataBundle methods the loop uses."""

    def __init__(self, n: int = 64) -> None:
        gen = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(n, 12, generator=gen), torch.randint(0, 4, (n,), generator=gen)

    def train_batches(self, batch_size, *, seed, epoch, device, start_step=0):
        for i in range(start_step, len(self.y) // batch_size):
            sl = slice(i * batch_size, (i + 1) * batch_size)
            yield self.x[sl], self.y[sl]

    def test_batches(self, batch_size, *, device):
        yield self.x, self.y


def _toy_run(method: str, total: int = 24, **sched_fields):
    model = TinyMLP()
    sched = Schedule(total_steps=total, steps_per_epoch=8, batch_size=8, lr=0.1, milestones=())
    trainer = SPARSE_TRAINERS.get(method)
    mask = full_mask(model) if trainer.dense_start else initial_mask(model, 0.7, seed=0)
    schedule = UpdateSchedule(
        **{
            "start": 0,
            "end": 16,
            "interval": 4,
            "drop_fraction": 0.5,
            "final_sparsity": 0.7,
            **sched_fields,
        }
    )
    updater = Recording(trainer, mask, schedule, seed=0)
    after_step: list[dict] = []

    def inspect(step, model, _opt, _state):
        params = prunable(model)
        after_step.append({n: params[n].detach().clone() for n in mask})
        for n, m in mask.items():  # pruned weights exactly zero after every step
            assert torch.count_nonzero(params[n].detach()[~m]) == 0

    optimizer = make_optimizer(model, sched)
    train(
        model,
        ToyBundle(),
        sched,
        seed=0,
        mask=mask,
        optimizer=optimizer,
        on_grad=[updater],
        on_step=[inspect],
        progress=False,
    )
    return updater, mask, after_step


def test_rigl_regrows_the_top_k_dense_gradients_among_inactive_weights():
    updater, _, after = _toy_run("rigl")
    assert [u["step"] for u in updater.seen] == [0, 4, 8, 12, 16]
    moved = 0
    for u in updater.seen:
        f = 0.5 / 2 * (1 + math.cos(math.pi * u["step"] / 16))
        for n, old in u["mask"].items():
            assert torch.count_nonzero(u["g"][n][~old]) > 0  # the gradient seen is dense
            k = math.floor(f * int(old.sum()))
            want = _hand_drop_grow(old, u["w"][n], u["g"][n].abs(), k)
            assert torch.nonzero(u["new"][n].flatten()).flatten().tolist() == want
            assert int(u["new"][n].sum()) == int(old.sum())  # per-layer count unchanged
            assert torch.equal(u["live"][n] != 0, u["new"][n])  # the loop trains the new mask
            born = u["new"][n] & ~old
            assert torch.count_nonzero(u["w_after"][n][born]) == 0  # regrown start at zero
            if n in u["momentum"]:
                assert torch.count_nonzero(u["momentum"][n][born]) == 0  # their momentum reset
            moved += int(born.sum())
        # RigL's update replaces the optimizer step: the weights after it are those before it,
        # except the dropped ones, now zero.
        i = u["step"]
        for n in u["w"]:
            assert torch.equal(after[i][n], u["w"][n] * u["new"][n])
    assert moved > 0


def test_set_keeps_counts_regrows_at_zero_and_stops_after_the_end():
    updater, mask, after = _toy_run("set", total=32, end=16)
    start = {n: m.clone() for n, m in updater.seen[0]["mask"].items()}
    assert [u["step"] for u in updater.seen] == [0, 4, 8, 12, 16]
    for u in updater.seen:
        for n, old in u["mask"].items():
            assert int(u["new"][n].sum()) == int(old.sum())
            born = u["new"][n] & ~old
            assert torch.count_nonzero(u["w_after"][n][born]) == 0
    assert any(not torch.equal(start[n], mask[n]) for n in mask)  # it moved
    last = updater.seen[-1]["new"]
    assert updater.seen[-1]["step"] == 16 and all(torch.equal(last[n], mask[n]) for n in mask)
    for w in after[17:]:  # after the end, the support never changes (nonzero ⊆ final mask)
        assert all(torch.count_nonzero(w[n][~mask[n]]) == 0 for n in mask)


def test_gmp_follows_the_cubic_schedule_exactly():
    updater, mask, _ = _toy_run(
        "gmp", total=32, start=4, end=20, interval=4, initial_sparsity=0.0, final_sparsity=0.7
    )
    sched = updater.schedule
    total = sum(m.numel() for m in mask.values())
    assert [u["step"] for u in updater.seen] == [4, 8, 12, 16, 20]
    for u in updater.seen:
        kept = sum(int(m.sum()) for m in u["new"].values())
        assert kept == total - round(sched.sparsity_at(u["step"]) * total)
        for n, old in u["mask"].items():
            assert not (u["new"][n] & ~old).any()  # never revived
    assert sum(int(m.sum()) for m in mask.values()) == total - round(0.7 * total)


# ---- through the pipeline -----------------------------------------------------------------------
def _final(store: RunStore, s: RunSpec) -> dict:
    return store.load_tensors(s.run_id, "final.pt")


def test_rigl_mask_moves_on_the_demo_network_and_every_checkpoint_is_masked(store):
    s = tiny(method="rigl", sparsity=0.9)
    seen = []

    def inspect(step, model, _opt, _state):
        latest = store.load_tensors(s.run_id, "latest.pt")
        for n, m in latest["mask"].items():
            assert torch.count_nonzero(latest["model"][n][~m]) == 0
        seen.append({n: int(m.sum()) for n, m in latest["mask"].items()})

    r = run(s, store, callbacks=[inspect], progress=False)
    assert r["status"] == "ok" and r["mask_updates"]["end"] == 22
    first, final = store.load_tensors(s.run_id, "mask.pt"), _final(store, s)
    inter = sum(int((first[n] & final["mask"][n]).sum()) for n in first)
    union = sum(int((first[n] | final["mask"][n]).sum()) for n in first)
    assert inter / union < 1  # Jaccard overlap of the first and the last mask
    counts = {n: int(m.sum()) for n, m in first.items()}
    assert seen == [counts] * 3 and {n: int(m.sum()) for n, m in final["mask"].items()} == counts
    for n, m in final["mask"].items():
        assert torch.count_nonzero(final["model"][n][~m]) == 0
    assert r["layer_density"] == {n: int(m.sum()) / m.numel() for n, m in final["mask"].items()}


@pytest.mark.parametrize("method", ["set", "rigl", "gmp"])
def test_a_killed_run_resumes_bit_identically(tmp_path, method):
    s = tiny(method=method, sparsity=0.8)
    a, b = RunStore(tmp_path / "a"), RunStore(tmp_path / "b")

    def kill(step, *_):
        if step == SPE:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(s, a, callbacks=[kill], progress=False)
    assert a.load_tensors(s.run_id, "latest.pt")["step"] == SPE
    resumed, straight = run(s, a, progress=False), run(s, b, progress=False)
    drop = ("timings", "created")
    assert {k: v for k, v in resumed.items() if k not in drop} == {
        k: v for k, v in straight.items() if k not in drop
    }
    fa, fb = _final(a, s), _final(b, s)
    for part in ("model", "mask"):
        assert fa[part].keys() == fb[part].keys()
        assert all(torch.equal(fa[part][k], fb[part][k]) for k in fa[part])


# ---- specs, ablations, CLI ----------------------------------------------------------------------
def test_new_fields_stay_out_of_the_id_until_set():
    base = RunSpec(method="rigl", sparsity=0.9)
    assert "drop_fraction" not in canonical_json(base)
    assert base.replace(drop_fraction=0.3).run_id != base.run_id
    assert base.replace(update_interval=100).run_id != base.run_id


@pytest.mark.parametrize("ablation", ["reinit", "init_normal"])
def test_the_ablations_that_make_sense_are_accepted(ablation):
    for method in ("set", "rigl", "gmp", "static"):
        tiny(method=method, sparsity=0.9, ablation=ablation)


@pytest.mark.parametrize(
    "fields, words",
    [
        ({"method": "rigl", "ablation": "shuffle"}, "does not apply to method 'rigl'"),
        ({"method": "gmp", "ablation": "invert"}, "does not apply to method 'gmp'"),
        ({"method": "set", "prune_step": 5}, "prune_step does not apply"),
        ({"method": "snip", "drop_fraction": 0.2}, "drop_fraction applies only to"),
        ({"method": "static", "update_interval": 5}, "update_interval applies only to"),
        ({"method": "rigl", "drop_fraction": 1.5}, "drop_fraction must be"),
        ({"method": "gmp", "initial_sparsity": 0.95}, "initial_sparsity must be"),
        ({"method": "rigl", "scope": "layer"}, "scope does not apply"),
        ({"method": "gmp", "allocation": "erk"}, "allocation does not apply"),
        ({"method": "rigl", "placement": "magnitude"}, "placement 'magnitude' does not apply"),
        ({"method": "set", "allocation": "snip"}, "needs a data-free allocation"),
    ],
)
def test_mistakes_are_refused_with_one_line(fields, words):
    with pytest.raises(SpecError, match=words):
        tiny(sparsity=0.9, **fields)


def test_an_update_end_beyond_training_is_refused_before_anything_runs():
    with pytest.raises(SpecError, match="beyond training"):
        prepare(tiny(method="rigl", sparsity=0.9, update_end=31))


def test_cli_flags_and_refusals(tmp_path, capsys):
    args = [
        "run",
        "--dataset",
        "fashion-mnist-mini",
        "--preset",
        TINY,
        "--method",
        "rigl",
        "--sparsity",
        "0.9",
        "--device",
        "cpu",
        "--store",
        str(tmp_path),
    ]
    assert main([*args, "--ablation", "shuffle"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not apply to method 'rigl'" in err
    assert not any(tmp_path.iterdir())
    assert main([*args, "--update-interval", "3", "--drop-fraction", "0.5", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    rid = RunSpec(
        preset=TINY, method="rigl", sparsity=0.9, update_interval=3, drop_fraction=0.5, epochs=1.0
    ).run_id
    assert rid in out and "density 10.00%" in out


def test_a_sweep_puts_the_families_side_by_side_skipping_refused_ablations():
    from earlyprune.sweeps.grid import expand

    specs = expand(
        {"preset": TINY},
        {
            "method": ["snip", "rigl", "gmp"],
            "sparsity": [0.9],
            "ablation": ["none", "shuffle", "reinit"],
        },
    )
    got = {(s.method, s.ablation) for s in specs if s.method != "dense"}
    assert got == {
        ("snip", "none"),
        ("snip", "shuffle"),
        ("snip", "reinit"),
        ("rigl", "none"),
        ("rigl", "reinit"),
        ("gmp", "none"),
        ("gmp", "reinit"),
    }
    swept = expand(
        {"preset": TINY, "method": "rigl", "sparsity": 0.9},
        {"drop_fraction": [0.1, 0.5], "update_interval": [2, 4]},
    )
    assert len({s.run_id for s in swept if s.method == "rigl"}) == 4


def test_reinit_draws_fresh_weights_under_the_same_starting_mask(store):
    plain = tiny(method="set", sparsity=0.9, epochs=1)
    fresh = plain.replace(ablation="reinit")
    for s in (plain, fresh):
        assert run(s, store, progress=False)["status"] == "ok"
    m0, m1 = (store.load_tensors(s.run_id, "mask.pt") for s in (plain, fresh))
    assert all(torch.equal(m0[n], m1[n]) for n in m0)
    w0, w1 = (_final(store, s)["model"] for s in (plain, fresh))
    assert any(not torch.equal(w0[n], w1[n]) for n in m0)
