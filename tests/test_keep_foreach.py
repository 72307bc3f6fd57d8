"""keep_pruned's foreach upkeep gives the bits the per-tensor loop gave (signs of zero too)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import earlyprune as ep
from earlyprune.masks.keep import keep_pruned


def _loop_apply(optimizer, pairs):
    """The per-tensor upkeep keep_pruned used before: the reference."""
    with torch.no_grad():
        for p, m in pairs:
            if p.grad is not None:
                p.grad.mul_(m)
        optimizer.step()
        for p, m in pairs:
            p.mul_(m)
            for value in optimizer.state.get(p, {}).values():
                if isinstance(value, torch.Tensor) and value.shape == p.shape:
                    value.mul_(m)


def _setup(opt_name):
    torch.manual_seed(0)
    model = ep.create_model("lenet_300_100", 10)
    gen = torch.Generator().manual_seed(1)
    mask = {n: torch.rand(p.shape, generator=gen) < 0.3 for n, p in ep.prunable(model).items()}
    if opt_name == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, amsgrad=True)
    return model, mask, opt


def _steps(model, opt, step_fn, n=4):
    gen = torch.Generator().manual_seed(2)
    for _ in range(n):
        x, y = torch.randn(16, 1, 28, 28, generator=gen), torch.randint(0, 10, (16,), generator=gen)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        step_fn()


def _bits(t):
    return t.view(torch.int32) if t.dtype == torch.float32 else t


@pytest.mark.parametrize("opt_name", ["sgd", "adamw"])
def test_foreach_upkeep_is_bit_identical_to_the_loop(opt_name, monkeypatch):
    model_a, mask, opt_a = _setup(opt_name)
    keeper = keep_pruned(opt_a, mask, model_a)
    calls = {"n": 0}
    original = torch._foreach_mul_

    def counted(*args):
        calls["n"] += 1
        return original(*args)

    monkeypatch.setattr(torch, "_foreach_mul_", counted)

    def step_a():
        keeper.mask_grads()
        opt_a.step()

    _steps(model_a, opt_a, step_a)
    assert calls["n"] == 4 * 3  # grads, weights, state: three kernels' worth per step
    model_b, _, opt_b = _setup(opt_name)
    params_b = dict(model_b.named_parameters())
    pairs = [(params_b[n], m.float()) for n, m in mask.items()]
    with torch.no_grad():
        for p, m in pairs:
            p.mul_(m)
    _steps(model_b, opt_b, lambda: _loop_apply(opt_b, pairs))
    for (name, a), b in zip(model_a.named_parameters(), model_b.parameters(), strict=True):
        assert torch.equal(_bits(a.detach()), _bits(b.detach())), name  # -0.0 vs 0.0 counts
        state_a, state_b = opt_a.state[a], opt_b.state[b]
        for key in state_a:
            if isinstance(state_a[key], torch.Tensor):
                assert torch.equal(_bits(state_a[key]), _bits(state_b[key])), (name, key)
    pruned = [(p, mask[n]) for n, p in model_a.named_parameters() if n in mask]
    assert all(bool((p[~m] == 0).all()) for p, m in pruned)
    keeper.remove()


def test_in_place_mask_edits_still_take_effect():
    model, mask, opt = _setup("sgd")
    keeper = keep_pruned(opt, mask, model)
    name = next(iter(keeper.masks))
    keeper.masks[name].zero_()  # sparse training edits the live masks in place
    keeper.apply()
    assert bool((dict(model.named_parameters())[name] == 0).all())
