"""The training loop reads the loss back a handful of times per epoch, and a diverged run still
stops, and stores, exactly where reading every step stops it (issue 22)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from earlyprune.data.bundle import TensorBundle, TensorSplit
from earlyprune.data.device import on_device
from earlyprune.train import loop
from earlyprune.train.loop import Schedule, TrainState, make_optimizer, train

N_TRAIN, BATCH = 640, 4  # 160 steps per epoch


def _bundle(poison: int | None = None) -> TensorBundle:
    gen = torch.Generator().manual_seed(3)
    splits = []
    for n in (N_TRAIN, 40):
        images = torch.randint(0, 200, (n, 1, 8, 8), generator=gen, dtype=torch.uint8)
        splits.append(TensorSplit(images, torch.randint(0, 10, (n,), generator=gen)))
    if poison is not None:
        splits[0].images[poison] = 255  # the one all-white training image
    # No shift: its zero padding would make the white image's border dark.
    return TensorBundle(
        name="t",
        num_classes=10,
        mean=(0.3,),
        std=(0.2,),
        train=splits[0],
        test=splits[1],
        shift=0,
        flip=True,
    )


class _Net(nn.Module):
    """A small conv net whose loss is infinite on the all-white image (checked on the device)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        white = (x > 3.4).flatten(1).all(1, keepdim=True)
        out = self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))
        return out + torch.where(white, float("inf"), 0.0)


def _train(bundle, epochs=2, lr=0.05, on_step=()):
    model = _Net()
    spe = N_TRAIN // BATCH
    sched = Schedule(epochs * spe, spe, BATCH, lr, (spe,))
    opt = make_optimizer(model, sched)
    state = train(model, bundle, sched, seed=1, optimizer=opt, on_step=on_step)
    return state, model, opt


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and a.view(-1).view(torch.uint8).equal(b.view(-1).view(torch.uint8))
    )


def _assert_same_run(fast, exact) -> None:
    (s1, m1, o1), (s2, m2, o2) = fast, exact
    assert (s1.step, s1.diverged) == (s2.step, s2.diverged)
    assert s1.curve == s2.curve
    sd1, sd2 = m1.state_dict(), m2.state_dict()
    assert all(_same(sd1[k], sd2[k]) for k in sd2)
    st1, st2 = o1.state_dict()["state"], o2.state_dict()["state"]
    assert st1.keys() == st2.keys()
    assert all(_same(st1[i][k], st2[i][k]) for i in st2 for k in st2[i])


def _noop(*_args) -> None:  # any on_step callback (without sync_at) makes the loop read every step
    pass


@pytest.mark.parametrize("every", [7, 50, 1000])
def test_a_late_read_divergence_stores_what_reading_every_step_stores(monkeypatch, every):
    monkeypatch.setattr(loop, "READ_EVERY", every)
    bundle = _bundle(poison=123)
    fast, exact = _train(bundle), _train(bundle, on_step=[_noop])
    assert exact[0].diverged and 0 < exact[0].step < N_TRAIN // BATCH
    _assert_same_run(fast, exact)


def test_a_divergence_in_a_later_epoch_and_a_huge_rate(monkeypatch):
    monkeypatch.setattr(loop, "READ_EVERY", 9)
    bundle = _bundle()
    fast, exact = _train(bundle, lr=1e8), _train(bundle, lr=1e8, on_step=[_noop])
    assert exact[0].diverged
    _assert_same_run(fast, exact)
    # An all-white image reached in the second epoch only (first epoch's loss is finite).
    poisoned = _bundle(poison=5)
    fast, exact = _train(poisoned, epochs=3), _train(poisoned, epochs=3, on_step=[_noop])
    assert exact[0].diverged
    _assert_same_run(fast, exact)


def test_finite_runs_are_bit_identical_and_curves_equal():
    bundle = _bundle()
    _assert_same_run(_train(bundle), _train(bundle, on_step=[_noop]))


def test_an_epoch_of_many_steps_reads_back_a_handful_of_times(count_reads):
    bundle = on_device(_bundle(), "cpu")  # made once (its shape checks read host tensors)
    model = _Net()
    spe = N_TRAIN // BATCH
    sched = Schedule(spe, spe, BATCH, 0.05, ())
    count_reads["n"] = 0
    state = train(model, bundle, sched, seed=1, state=TrainState())
    assert state.step == spe == 160 and not state.diverged
    # 160 // READ_EVERY periodic reads, the epoch's end and one evaluation pass.
    assert count_reads["n"] <= spe // loop.READ_EVERY + 2, count_reads["n"]
