"""Each convention the README states for the modern baselines, checked against today's code.

SynFlow-L2 against an independent statement of what the authors' ``Prune/synflowl2_utils.py``
scores (PHEW repository); PHEW's walk starts against the reference's round robin over the first
layer's input units; NTK-SAP's resample initializer; the loss FORCE / Iterative SNIP score with.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import TinyCNN, image_batch, make_model, reference_select
from torch import Tensor, nn

import earlyprune as ep

F64 = torch.float64


def layers_of(model: nn.Module) -> dict[str, nn.Module]:
    """Conv/Linear modules by the name of their weight (found without ``ep.prunable``)."""
    return {
        f"{n}.weight": m for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)
    }


# ------------------------------------------------------------------------------ synflow_l2


def reference_synflow_l2(model: nn.Module, input_shape, mask=None) -> dict[str, Tensor]:
    """One round of the authors' SynFlow-L2, restated: every parameter p := |p|·|p| (buffers as
    they are), eval mode; with a mask, masked weights and the biases of units left without any
    kept incoming weight are zeroed; R = Σ outputs on ones; score = |∂R/∂p| · √p."""
    net = copy.deepcopy(model).to(F64).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(p.abs() * p.abs())
        for name, m in layers_of(net).items():
            if mask is not None:
                m.weight.mul_(mask[name])
                if m.bias is not None:
                    m.bias.mul_(mask[name].reshape(len(m.bias), -1).sum(1) > 0)
    net.zero_grad()
    net(torch.ones((1, *input_shape), dtype=F64)).sum().backward()
    return {n: m.weight.grad.abs() * m.weight.detach().sqrt() for n, m in layers_of(net).items()}


def some_mask(model: nn.Module, density: float, seed: int, dead_rows: int = 0) -> dict[str, Tensor]:
    """A random mask; the first ``dead_rows`` output units of every layer lose all their weights."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for n, m in layers_of(model).items():
        keep = torch.rand(m.weight.shape, generator=gen) < density
        keep[:dead_rows] = False
        out[n] = keep
    return out


def nets() -> list[tuple[str, nn.Module, tuple[int, ...]]]:
    lenet = ep.create_model("lenet_300_100", 10)
    conv = make_model(TinyCNN, seed=3)  # γ, β and running means of both signs; conv2 has a bias
    with torch.no_grad():
        for m in conv.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.mul_(3.0)  # clearly signed: |running mean| would change R
    return [("lenet_300_100", lenet, (1, 28, 28)), ("tiny_cnn", conv, (3, 8, 8))]


@pytest.mark.parametrize("which", [0, 1], ids=["lenet_300_100", "tiny_cnn"])
@pytest.mark.parametrize("dead_rows", [None, 0, 2])
def test_synflow_l2_scores_what_the_authors_code_scores(which, dead_rows):
    _, model, shape = nets()[which]
    mask = None if dead_rows is None else some_mask(model, 0.5, which, dead_rows)
    x = torch.zeros((2, *shape))
    ours = ep.score(model, "synflow_l2", (x, torch.zeros(2, dtype=torch.long)), mask=mask)
    ref = reference_synflow_l2(model, shape, mask)
    assert set(ours) == set(ref)
    for n in ref:
        torch.testing.assert_close(ours[n].to(F64), ref[n], rtol=1e-12, atol=0)


def test_synflow_l2_iterative_masks_equal_the_restated_reference_under_exact_counts():
    """Three rounds: each round rescored (dead units' biases zeroed) on the last round's mask."""
    _, model, shape = nets()[1]
    total = sum(m.weight.numel() for m in layers_of(model).values())
    mask = {n: torch.ones_like(m.weight, dtype=torch.bool) for n, m in layers_of(model).items()}
    for t in (1, 2, 3):
        n_keep = total - round((1 - 0.4 ** (t / 3)) * total)
        mask = reference_select(reference_synflow_l2(model, shape, mask), n_keep, mask)
    x = torch.zeros((2, *shape))
    ours = ep.prune(model, "synflow_l2", 0.6, (x, torch.zeros(2, dtype=torch.long)), rounds=3)
    assert all(torch.equal(ours[n], mask[n]) for n in mask)

