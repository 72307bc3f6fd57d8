"""LossWatch: no host read-back per step, the same loss sums, divergence still caught."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from earlyprune.train.watch import LossWatch


def _epoch(steps, watch, poison=None):
    """A real SGD loop on a tiny net; returns the per-step losses as Python floats (after)."""
    torch.manual_seed(0)
    net = nn.Linear(6, 3)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(1)
    losses, readings = [], []
    for step in range(steps):
        x, y = torch.randn(8, 6, generator=gen), torch.randint(0, 3, (8,), generator=gen)
        loss = F.cross_entropy(net(x), y)
        if step == poison:
            loss = loss * float("inf")
        watch.add(loss, step)
        losses.append(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if watch.due():
            readings.append(watch.read())
    readings.append(watch.read())
    return losses, readings


def test_an_epoch_of_many_steps_reads_back_a_handful_of_times(count_reads):
    watch = LossWatch("cpu", every=100)
    count_reads["n"] = 0
    _epoch(400, watch)
    # 4 periodic reads + the end of the epoch; the loop itself reads nothing.
    assert watch.reads == 5
    assert count_reads["n"] <= 5


def test_a_per_step_read_would_be_counted(count_reads):
    # The counter sees float(loss): the check above is not blind.
    count_reads["n"] = 0
    float(torch.tensor(1.0))
    torch.tensor([1.0]).tolist()
    assert count_reads["n"] == 2


def test_sum_is_bit_for_bit_the_python_sum_of_floats():
    watch = LossWatch("cpu", every=7)
    losses, readings = _epoch(50, watch)
    python_sum = 0.0
    for loss in losses:
        python_sum += float(loss)
    assert readings[-1].loss_sum == python_sum and readings[-1].count == 50
    assert readings[-1].mean == python_sum / 50 and not readings[-1].diverged
    watch.reset()
    assert watch.read().loss_sum == 0.0 and watch.read().count == 0


@pytest.mark.parametrize("bad", [0, 13, 49])
def test_divergence_is_caught_with_its_step(bad):
    watch = LossWatch("cpu", every=10)
    losses, readings = _epoch(50, watch, poison=bad)
    first = next(r for r in readings if r.diverged)
    assert first.first_bad == bad
    assert readings.index(first) == bad // 10  # at the first read after it
    assert readings[-1].first_bad == bad  # later non-finite losses do not move it
    assert math.isfinite(readings[-1].loss_sum)
    watch.reset()
    assert watch.read().diverged  # a new epoch keeps the divergence


def test_every_must_be_positive():
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="every"):
            LossWatch("cpu", every=bad)
