"""Micro-batched scoring equals one-batch scoring on a network without batch statistics."""

from __future__ import annotations

import pytest
import torch

import earlyprune as ep
from earlyprune.masks.mask import full_mask
from earlyprune.methods.base import METHODS
from earlyprune.methods.micro_batch import (
    MICRO_BATCHED,
    micro_batched,
    prospr_micro,
    score_in_micro_batches,
)
from earlyprune.methods.scoring.prospr import prospr_method, prospr_scores


def _lenet(dtype=torch.float64):
    torch.manual_seed(0)
    model = ep.create_model("lenet_300_100", 10).to(dtype)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(30, 1, 28, 28, generator=gen, dtype=dtype)
    y = torch.randint(0, 10, (30,), generator=gen)
    # A partly pruned mask: pruned weights matter to FORCE and ProsPr.
    mask = {n: torch.rand(p.shape, generator=gen) < 0.7 for n, p in ep.prunable(model).items()}
    return model, (x, y), mask


def _close(a, b, rtol):
    assert a.keys() == b.keys()
    for n in a:
        scale = b[n].abs().max()
        assert scale > 0, n  # the comparison must not be between zeros
        torch.testing.assert_close(a[n], b[n], rtol=0, atol=rtol * float(scale))


@pytest.mark.parametrize("name", sorted(MICRO_BATCHED))
@pytest.mark.parametrize("micro", [1, 7, 16])
def test_micro_batched_scores_equal_one_batch_scores_on_lenet(name, micro):
    model, batch, mask = _lenet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    one = METHODS.get(name).prepare(model, batch, 0)(mask)
    got = score_in_micro_batches(model, name, batch, mask, 0, micro)
    _close(got, one, 1e-9)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_float32_agrees_to_float_tolerance():
    model, batch, mask = _lenet(torch.float32)
    for name in ("snip", "grasp", "prospr"):
        one = METHODS.get(name).prepare(model, batch, 0)(mask)
        _close(score_in_micro_batches(model, name, batch, mask, 0, 8), one, 1e-4)


@pytest.mark.parametrize(("steps", "first_order"), [(0, False), (1, False), (2, True)])
def test_prospr_variants_through_the_backward_sweep(steps, first_order):
    model, batch, mask = _lenet()
    one = prospr_scores(model, batch, mask, steps=steps, lr=0.05, first_order=first_order)
    got = prospr_micro(model, batch, mask, 9, steps=steps, lr=0.05, first_order=first_order)
    _close(got, one, 1e-9)


def test_a_whole_batch_micro_batch_runs_the_method_itself():
    model, batch, mask = _lenet()
    one = METHODS.get("snip").prepare(model, batch, 0)(mask)
    got = score_in_micro_batches(model, "snip", batch, mask, 0, 30)
    assert all(torch.equal(got[n], one[n]) for n in one)


def test_batchnorm_statistics_differ_per_micro_batch():
    # Stated difference: train-mode BatchNorm normalizes each micro-batch by its own statistics.
    torch.manual_seed(0)
    model = ep.create_model("resnet20", 10).double()
    x = torch.randn(16, 3, 32, 32, dtype=torch.float64)
    y = torch.arange(16) % 10
    mask = full_mask(model)
    one = METHODS.get("snip").prepare(model, (x, y), 0)(mask)
    micro = score_in_micro_batches(model, "snip", (x, y), mask, 0, 4)
    assert not all(torch.allclose(micro[n], one[n], rtol=1e-6) for n in one)


def test_prune_with_a_micro_batched_method_and_refusals():
    model, batch, mask = _lenet(torch.float32)
    pruned = ep.prune(model, micro_batched("snip", 8), 0.9, batch=batch)
    plain = ep.prune(model, "snip", 0.9, batch=batch)
    total = sum(m.numel() for m in plain.values())
    agree = sum(int((pruned[n] == plain[n]).sum()) for n in plain)
    assert agree >= total - 10  # float ties at the cut may fall either way
    assert micro_batched("synflow", 4) is METHODS.get("synflow")
    with pytest.raises(ValueError, match="cannot score in micro-batches; those that can"):
        micro_batched(prospr_method(steps=1), 4)  # a variant, not the registered prospr
    with pytest.raises(ValueError, match="micro_batch must be a positive integer"):
        score_in_micro_batches(model, "snip", batch, mask, 0, 0)
