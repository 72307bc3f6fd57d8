"""Fused training (issue 23): K masked networks trained as one stacked model.

Reference numbers are solo runs of ``train.loop.train`` on the same members; tiny data (a
stratified subset of the embedded Fashion-MNIST), CPU, one thread, so every comparison that
claims bit-identity is exact.
"""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import earlyprune as ep
from earlyprune.core.errors import SpecError
from earlyprune.data import TensorBundle, TensorSplit, load_dataset
from earlyprune.models import create_model
from earlyprune.run.fused_packs import check_fusable, packs
from earlyprune.run.spec import RunSpec
from earlyprune.train.fused import FusedPack, Member
from earlyprune.train.fused_loop import checkpoint_to, train_pack
from earlyprune.train.fused_state import load_pack_file
from earlyprune.train.loop import train
from earlyprune.train.optim import Schedule

BATCH = 64
#: (seed, method, sparsity): four members of different methods and seeds, a dense one among them.
MEMBERS = [(0, "snip", 0.9), (1, "magnitude", 0.8), (2, "random", 0.5), (3, "dense", 0.0)]


def tiny_bundle() -> TensorBundle:
    return load_dataset("fashion-mnist-mini").subset(512, 256, seed=0)


def schedule(bundle: TensorBundle, epochs: int = 2, **changes: object) -> Schedule:
    spe = bundle.steps_per_epoch(BATCH)
    base = dict(
        total_steps=epochs * spe,
        steps_per_epoch=spe,
        batch_size=BATCH,
        lr=0.1,
        milestones=(spe,),
        weight_decay=5e-4,
        momentum=0.9,
    )
    return Schedule(**{**base, **changes})  # type: ignore[arg-type]


def member(bundle: TensorBundle, seed: int, method: str, sparsity: float, arch: str = "smallcnn"):
    model = create_model(arch, bundle.num_classes, input_shape=bundle.input_shape, seed=seed)
    if method == "dense":
        return Member(model, seed, None, f"{method}{seed}")
    batch = ep.scoring_batch(bundle, per_class=2, seed=seed)
    mask = ep.prune(model, method, sparsity, batch=batch, seed=seed)
    return Member(model, seed, mask, f"{method}{seed}")


def fused(members: list[Member], bundle: TensorBundle, sched: Schedule):
    pack = FusedPack([copy.deepcopy(m) for m in members], sched)
    return pack, train_pack(pack, bundle)


def solo(m: Member, bundle: TensorBundle, sched: Schedule, channels_last: bool):
    model = copy.deepcopy(m.model)
    state = train(
        model,
        bundle,
        sched,
        seed=m.seed,
        mask=m.mask,
        channels_last=channels_last,
        progress=False,
    )
    return model.state_dict(), state


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(
        float((a[n].double() - b[n].double()).abs().max()) for n in a if a[n].is_floating_point()
    )


@pytest.fixture(scope="module")
def four():
    bundle = tiny_bundle()
    sched = schedule(bundle)
    members = [member(bundle, *m) for m in MEMBERS]
    pack, state = fused(members, bundle, sched)
    return bundle, sched, members, pack, state


def test_fused_matches_solo_within_the_channels_last_difference(four):
    bundle, sched, members, pack, state = four
    for k, m in enumerate(members):
        cl_weights, cl_state = solo(m, bundle, sched, channels_last=True)
        nchw_weights, _ = solo(m, bundle, sched, channels_last=False)
        layout_gap = max_diff(cl_weights, nchw_weights)
        fused_gap = max_diff(pack.model_state(k), cl_weights)
        print(
            f"member {m.name}: fused-vs-solo {fused_gap:.3g}, NCHW-vs-channels-last {layout_gap:.3g}"
        )
        # Both are float reassociation grown by training; the fused one may sum in yet another
        # order, so allow a small multiple (the CPU prototype measured fused ≈ layout).
        assert fused_gap <= 4 * layout_gap + 1e-5
        solo_acc = cl_state.curve[-1]["test_accuracy"]
        assert abs(state.curves[k][-1]["test_accuracy"] - solo_acc) <= 0.02  # 5 of 256
        assert [c["step"] for c in state.curves[k]] == [c["step"] for c in cl_state.curve]
        assert not state.member(k).diverged


def test_pruned_weights_stay_exactly_zero_in_weights_and_checkpoints(four, tmp_path):
    _, _, members, pack, state = four
    checkpoint_to(tmp_path / "pack.pt")(state.step, pack, state)
    saved = load_pack_file(tmp_path / "pack.pt")
    for k, m in enumerate(members):
        if m.mask is None:
            continue
        weights = pack.model_state(k)
        for name, keep in m.mask.items():
            assert (weights[name][~keep] == 0).all()
            assert (saved["members"][k]["model"][name][~keep] == 0).all()
            index = [n for n, _ in m.model.named_parameters()].index(name)
            momentum = saved["members"][k]["optimizer"]["state"][index]["momentum_buffer"]
            assert (momentum[~keep] == 0).all()


def test_a_member_continues_solo_from_the_pack_checkpoint(four):
    bundle, sched, members, pack, state = four
    ckpt = pack.checkpoint(state)["members"][0]
    model = copy.deepcopy(members[0].model)
    model.load_state_dict(ckpt["model"])
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    opt.load_state_dict(ckpt["optimizer"])  # the solo optimizer takes the member's state as is
    assert ckpt["step"] == sched.total_steps and ckpt["curve"] == state.curves[0]


def test_partner_independence_bit_identical():
    bundle = tiny_bundle()
    sched = schedule(bundle, epochs=1)
    a = member(bundle, 5, "snip", 0.9)
    one = [a, member(bundle, 6, "random", 0.5), member(bundle, 7, "dense", 0.0)]
    two = [a, member(bundle, 8, "magnitude", 0.7), member(bundle, 9, "snip", 0.95)]
    pack1, st1 = fused(one, bundle, sched)
    pack2, st2 = fused(two, bundle, sched)
    w1, w2 = pack1.model_state(0), pack2.model_state(0)
    assert all(torch.equal(w1[n], w2[n]) for n in w1)  # BN running stats included
    assert st1.curves[0] == st2.curves[0]


def test_a_diverging_member_is_frozen_and_the_others_go_on():
    bundle = tiny_bundle()
    sched = schedule(bundle, epochs=1)
    good = member(bundle, 1, "random", 0.5)
    bad = member(bundle, 2, "random", 0.5)
    with torch.no_grad():
        bad.model.fc2.weight.fill_(float("nan"))
    healthy = member(bundle, 3, "dense", 0.0)
    pack_bad, st_bad = fused([good, bad], bundle, sched)
    pack_ok, st_ok = fused([good, healthy], bundle, sched)
    assert st_bad.member(1).diverged and st_bad.member(1).step == 0
    assert st_bad.curves[1] == []
    assert not st_bad.member(0).diverged
    w_bad, w_ok = pack_bad.model_state(0), pack_ok.model_state(0)
    assert all(torch.equal(w_bad[n], w_ok[n]) for n in w_bad)  # NaN never crossed members


class UserNet(nn.Module):
    """A user-style network: functional calls, a residual add, a buffer of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.norm = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 10)
        self.register_buffer("scale", torch.tensor(0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.norm(self.conv(x)))
        h = h + self.scale * h
        return self.head(h.mean(dim=(2, 3)))


def test_a_user_network_and_lenet_fuse_like_their_solo_runs():
    bundle = tiny_bundle()
    sched = schedule(bundle, epochs=1)
    for build in (UserNet, lambda: create_model("lenet_300_100", 10)):
        members = []
        for seed in (0, 1):
            torch.manual_seed(seed)
            model = build()
            mask = ep.prune(model, "random", 0.5, seed=seed)
            members.append(Member(model, seed, mask))
        pack, _ = fused(members, bundle, sched)
        for k, m in enumerate(members):
            ref, _ = solo(m, bundle, sched, channels_last=False)
            assert max_diff(pack.model_state(k), ref) < 1e-3
            for name, keep in m.mask.items():
                assert (pack.model_state(k)[name][~keep] == 0).all()


@pytest.mark.slow
def test_resnet20_batchnorm_statistics_stay_per_member():
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (96, 3, 32, 32), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 10, (96,), generator=gen)
    split = TensorSplit(images, labels)
    bundle = TensorBundle(
        name="rand",
        num_classes=10,
        mean=(0.5,) * 3,
        std=(0.25,) * 3,
        train=split,
        test=split,
        shift=4,
        flip=True,
    )
    sched = Schedule(total_steps=3, steps_per_epoch=3, batch_size=32, lr=0.05, milestones=())
    members = [member(bundle, s, "random", 0.8, arch="resnet20") for s in (0, 1)]
    pack, state = fused(members, bundle, sched)
    for k, m in enumerate(members):
        ref, _ = solo(m, bundle, sched, channels_last=True)
        nchw, _ = solo(m, bundle, sched, channels_last=False)
        ours = pack.model_state(k)
        gap, layout_gap = max_diff(ours, ref), max_diff(nchw, ref)
        print(
            f"resnet20 member {k}: fused-vs-solo {gap:.3g}, NCHW-vs-channels-last {layout_gap:.3g}"
        )
        assert gap <= 4 * layout_gap + 1e-5
        counts = [n for n in ours if n.endswith("num_batches_tracked")]
        assert counts and all(ours[n] == ref[n] == 3 for n in counts)
    # Each member's statistics are within the layout gap of its own solo run's (above, every
    # buffer is compared); they differ between members, so none were pooled.
    var = next(n for n in pack.model_state(0) if n.endswith("running_var"))
    assert not torch.equal(pack.model_state(0)[var], pack.model_state(1)[var])


DRIVER = textwrap.dedent(
    """
    import os, signal, sys, torch
    sys.path.insert(0, {tests!r})
    from test_fused import MEMBERS, member, schedule, tiny_bundle
    from earlyprune.train.fused import FusedPack
    from earlyprune.train.fused_loop import checkpoint_to, resume_from, train_pack
    kill_at, path, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    bundle = tiny_bundle()
    sched = schedule(bundle, epochs=3)
    pack = FusedPack([member(bundle, *m) for m in MEMBERS], sched)
    state = resume_from(pack, path)
    def kill(step, pack, state):
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    train_pack(pack, bundle, state=state, on_step=[kill], on_epoch=[checkpoint_to(path)])
    torch.save([pack.model_state(k) for k in range(pack.k)], out)
    """
)


@pytest.mark.slow
def test_sigkill_mid_pack_then_resume_is_bit_identical(tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(tests=str(Path(__file__).parent)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def drive(kill_at: int, ckpt: str, out: str) -> int:
        args = [
            sys.executable,
            str(script),
            str(kill_at),
            str(tmp_path / ckpt),
            str(tmp_path / out),
        ]
        return subprocess.run(args, env=env, timeout=600).returncode

    spe = tiny_bundle().steps_per_epoch(BATCH)
    assert drive(-1, "ref.pt", "ref_out.pt") == 0
    assert drive(spe + 3, "pack.pt", "out.pt") == -signal.SIGKILL  # mid-epoch 2
    assert load_pack_file(tmp_path / "pack.pt")["step"] == spe  # epoch 1 was saved
    assert drive(-1, "pack.pt", "out.pt") == 0
    ref, got = torch.load(tmp_path / "ref_out.pt"), torch.load(tmp_path / "out.pt")
    assert all(torch.equal(r[n], g[n]) for r, g in zip(ref, got, strict=True) for n in r)


def test_check_fusable_and_pack_forming():
    base = RunSpec(
        dataset="fashion-mnist-mini", epochs=1.0, device="cpu", method="snip", sparsity=0.9
    )
    runs = [base, base.replace(seed=1), base.replace(method="random", sparsity=0.5)]
    check_fusable(runs)
    with pytest.raises(SpecError, match="different lr"):
        check_fusable([base, base.replace(lr=0.05)])
    with pytest.raises(SpecError, match="different model"):
        check_fusable([base, base.replace(model="lenet_300_100")])
    with pytest.raises(SpecError, match="sparse training"):
        check_fusable([base, base.replace(method="rigl", sparsity=0.9)])
    other = base.replace(epochs=2.0)
    rigl = base.replace(method="set", sparsity=0.9)
    grouped = packs([*runs, other, rigl, base.replace(seed=2), other.replace(seed=3)], 2)
    assert [[s.run_id for s in p] for p in grouped] == [
        [runs[0].run_id, runs[1].run_id],
        [runs[2].run_id, base.replace(seed=2).run_id],
        [other.run_id, other.replace(seed=3).run_id],
        [rigl.run_id],
    ]
    for p in grouped[:3]:  # the sparse-training run trains solo: a pack of one, never fused
        check_fusable(p)
    with pytest.raises(SpecError, match="positive whole number"):
        packs(runs, 0)
