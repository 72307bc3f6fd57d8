"""Effective masks (weights on an input→output path) against networks where the answer is known
by hand, and the refusal of degenerate masks in ``ep.prune`` and the pipeline."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

import earlyprune as ep
from earlyprune.core.errors import SpecError
from earlyprune.masks.connectivity import effective_density, effective_mask, layer_effective_density
from earlyprune.run.pipeline import run
from earlyprune.run.spec import RunSpec
from earlyprune.run.store import RunStore


class Chain(nn.Module):
    """3 → 4 → 2 → 2 fully connected with ReLU (and biases, which must not open paths)."""

    def __init__(self) -> None:
        super().__init__()
        self.l1, self.l2, self.l3 = nn.Linear(3, 4), nn.Linear(4, 2), nn.Linear(2, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.l3(torch.relu(self.l2(torch.relu(self.l1(x)))))


def full(model: nn.Module) -> dict[str, Tensor]:
    return {n: torch.ones_like(p, dtype=torch.bool) for n, p in ep.prunable(model).items()}


def test_a_chain_with_a_dead_unit_and_a_unit_that_reaches_nothing() -> None:
    model = Chain()
    mask = full(model)
    mask["l1.weight"][1] = False  # hidden unit 1 gets no input: its outgoing weights are dead
    mask["l2.weight"][:, 2] = False  # hidden unit 2 feeds nothing: its incoming weights are dead
    mask["l2.weight"][1] = False  # second-layer unit 1 gets nothing: l3's column 1 is dead
    eff = effective_mask(model, mask)
    expected = {k: v.clone() for k, v in mask.items()}
    expected["l2.weight"][:, 1] = False  # out of the input-less unit 1
    expected["l1.weight"][2] = False  # into unit 2, which reaches no output
    expected["l3.weight"][:, 1] = False
    for name in mask:
        assert torch.equal(eff[name], expected[name]), name
    kept = sum(int(v.sum()) for v in expected.values())
    assert effective_density(model, mask) == pytest.approx(kept / (12 + 8 + 4))
    assert layer_effective_density(model, mask)["l3.weight"] == pytest.approx(2 / 4)
    everything = effective_mask(model, full(model))
    assert all(bool(m.all()) for m in everything.values())


class Residual(nn.Module):
    """conv → BN → ReLU → [conv2 → BN] + identity → max-pool → linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(2, 3, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(3)
        self.conv2 = nn.Conv2d(3, 3, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(3)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(3 * 2 * 2, 4)

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.stem(x)))
        out = torch.relu(out + self.bn2(self.conv2(out)))
        return self.fc(self.pool(out).flatten(1))


def test_a_residual_block_with_an_empty_conv_keeps_the_skip_path() -> None:
    model = Residual()
    with torch.no_grad():  # BN statistics that would break a naive forward (negative means)
        model.bn1.running_mean.fill_(5.0)
        model.bn2.weight.fill_(-1.0)
    mask = full(model)
    mask["conv2.weight"][:] = False
    eff = effective_mask(model, mask, (2, 4, 4))
    assert torch.equal(eff["stem.weight"], mask["stem.weight"])  # still reaches fc via the skip
    assert torch.equal(eff["fc.weight"], mask["fc.weight"])  # every pooled position is a path
    assert not eff["conv2.weight"].any()
    mask["stem.weight"][1] = False  # stem channel 1 is then fed by nothing at all
    eff = effective_mask(model, mask, (2, 4, 4))
    assert not eff["fc.weight"].reshape(4, 3, 4)[:, 1].any()
    assert eff["fc.weight"].reshape(4, 3, 4)[:, [0, 2]].all()


def test_ep_prune_refuses_masks_with_no_weight_or_no_path_unless_allowed() -> None:
    model = Chain()
    x = (torch.ones(2, 3), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="keeps none of the 24 weights"):
        ep.prune(model, "magnitude", 0.99, batch=x)
    assert not any(
        m.any() for m in ep.prune(model, "magnitude", 0.99, allow_disconnected=True).values()
    )
    with pytest.raises(ValueError, match="no path from input to output: layer.s. l3.weight"):
        ep.prune(model, "magnitude", 0.9, batch=x, scope="layer")  # keeps 1, 1 and 0 weights
    mask = ep.prune(model, "magnitude", 0.9, batch=x, scope="layer", allow_disconnected=True)
    assert int(mask["l3.weight"].sum()) == 0


def test_ties_straddling_the_threshold_warn_in_one_line() -> None:
    def constant(model, batch, mask, seed):
        return {n: torch.ones(m.shape) for n, m in mask.items()}

    model = Chain()
    method = ep.scoring.Method("c", lambda m, b, s: lambda mask: constant(m, b, mask, s))
    # Equal scores are removed in network order: half the weights is all of l1 — refused.
    with pytest.warns(RuntimeWarning), pytest.raises(ValueError, match="layer.s. l1.weight"):
        ep.prune(model, method, 0.5, batch=(torch.ones(1, 3), torch.zeros(1, dtype=torch.long)))
    with pytest.warns(RuntimeWarning, match=r"^24 weights share the threshold score 1; 12 of them"):
        ep.prune(model, method, 0.5, allow_disconnected=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ep.prune(model, "magnitude", 0.5)  # distinct scores: silent


# The command line's refusals (one line, exit 2, nothing written) are rows of test_bad_input.py.


def test_results_record_the_effective_density(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    spec = RunSpec(epochs=0.25, device="cpu", method="random", sparsity=0.99)
    result = run(spec, RunStore(tmp_path), progress=False)
    layers = result["layer_effective_density"]
    assert layers.keys() == result["layer_density"].keys()
    assert all(layers[n] <= result["layer_density"][n] for n in layers)
    # smallcnn at 1 %: the 64→10 head keeps ≈ 6 weights, so most of the rest is cut off.
    assert 0 < result["effective_density"] < 0.5 * result["density"]
    with pytest.raises(SpecError, match="keeps none"):
        run(spec.replace(sparsity=0.999999), RunStore(tmp_path), progress=False)
