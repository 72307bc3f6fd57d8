"""Allocations × placements: each rule against a hand computation, exact totals, composition.

The hand-worked network has three prunable tensors: conv (4, 2, 3, 3) = 72 weights, conv
(8, 4, 3, 3) = 288 and linear (10, 8) = 80, N = 440. The expected counts below were computed
by hand from each rule's formula (the arithmetic is in the comments), not by running the code.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import earlyprune as ep
from earlyprune.masks.mask import layer_schedule
from earlyprune.methods.allocation import ALLOCATIONS, allocate, integer_counts
from earlyprune.methods.placement import PLACEMENTS, resolve_placement
from earlyprune.methods.scoring import METHODS

SHAPES = [(4, 2, 3, 3), (8, 4, 3, 3), (10, 8)]


def test_erk_by_hand_with_the_dense_resolve():
    # raw = Σ dims / Π dims: 12/72 = 1/6, 18/288 = 1/16, 18/80 = 0.225; raw·n = 12, 18, 18.
    # Density 0.5 keeps 220: ε = 220/48 = 4.583, ε·0.225 = 1.03 > 1 -> the linear layer is
    # dense; ε = (220 − 80)/30 = 4.667 -> 56 and 84.
    assert allocate("erk", SHAPES, 220) == [56, 84, 80]
    # Density 0.45 keeps 198: ε = 198/48 = 4.125 (ε·0.225 = 0.93, no dense layer) -> quotas
    # 49.5, 74.25, 74.25 -> floors 49, 74, 74 and the one unit left to the largest remainder.
    assert allocate("erk", SHAPES, 198) == [50, 74, 74]


def test_er_by_hand_ignores_kernel_sizes():
    # raw = (n_in + n_out)/(n_in·n_out): 6/8, 12/32, 18/80; raw·n = 54, 108, 18 (sum 180).
    # 220: ε = 11/9, ε·0.75 = 0.917 -> 66, 132, 22.
    assert allocate("er", SHAPES, 220) == [66, 132, 22]
    # 264: ε·0.75 = 1.1 -> first layer dense; ε = 192/126 -> 164.57, 27.43 -> 165, 27.
    assert allocate("er", SHAPES, 264) == [72, 165, 27]


def test_uniform_and_uniform_plus_by_hand():
    assert allocate("uniform", SHAPES, 220) == [36, 144, 40]
    # First layer dense; 148 left over 368 weights: d = 0.402 -> 115.8 and 32.2 (≥ 20 % of 80).
    assert allocate("uniform_plus", SHAPES, 220) == [72, 116, 32]
    # 88: the rest would give the output layer 3.5 < 16; it gets 16 but the budget only leaves
    # room for 15 once the middle layer keeps one weight.
    assert allocate("uniform_plus", SHAPES, 88) == [72, 1, 15]
    # 120: first dense, 48 left; output at d = 48/368 would be 10.4 < 16 -> 16, middle 32.
    assert allocate("uniform_plus", SHAPES, 120) == [72, 32, 16]


def test_smart_ratio_by_hand():
    # L = 3: keep ratios ∝ 3²+3 = 12 and 2²+2 = 6 for the convolutions; the linear layer keeps
    # 30 % = 24. 220 − 24 = 196 = ε·(12·72 + 6·288) -> ε = 196/2592 -> 65.33 and 130.67.
    assert allocate("smart_ratio", SHAPES, 220) == [65, 131, 24]
    # 308: ratio 12ε = 1.31 > 1 -> first layer dense, the second gets 308 − 24 − 72 = 212.
    assert allocate("smart_ratio", SHAPES, 308) == [72, 212, 24]
    # Density 0.1 < 30 %: the linear layer keeps the overall density (8), convs the rest.
    assert allocate("smart_ratio", SHAPES, 44)[2] == 8


def test_integer_counts_largest_remainder_and_one_per_layer():
    assert integer_counts([1.5, 1.5, 2.0], [4, 4, 4], 5) == [2, 1, 2]  # tie: the earlier layer
    assert integer_counts([0.2, 9.8], [10, 10], 10) == [1, 9]  # an empty layer borrows one
    assert integer_counts([0.0, 0.0], [3, 3], 0) == [0, 0]


shapes_st = st.lists(
    st.one_of(
        st.tuples(st.integers(1, 12), st.integers(1, 12)),
        st.tuples(st.integers(1, 8), st.integers(1, 8), st.integers(1, 3), st.integers(1, 3)),
    ),
    min_size=1,
    max_size=6,
)


@given(shapes=shapes_st, sparsity=st.floats(0.0, 0.999))
def test_every_allocation_meets_the_budget_exactly(shapes, sparsity):
    total = sum(math.prod(s) for s in shapes)
    n_keep = total - round(sparsity * total)
    for name in ALLOCATIONS.names():
        counts = allocate(name, shapes, n_keep)
        assert sum(counts) == n_keep, name
        assert all(0 <= c <= math.prod(s) for c, s in zip(counts, shapes, strict=True)), name
        if n_keep >= len(shapes):
            assert min(counts) >= 1, name


@given(final=st.lists(st.integers(0, 50), min_size=1, max_size=4), rounds=st.integers(1, 8))
def test_layer_schedule_is_monotone_and_ends_exactly(final, rounds):
    sizes = {str(i): 50 for i in range(len(final))}
    steps = layer_schedule({str(i): c for i, c in enumerate(final)}, sizes, rounds)
    assert steps[-1] == {str(i): c for i, c in enumerate(final)}
    for name in sizes:
        seq = [sizes[name]] + [s[name] for s in steps]
        assert all(a >= b for a, b in zip(seq, seq[1:], strict=False))


class Hand(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(2, 4, 3, bias=False)
        self.c2 = nn.Conv2d(4, 8, 3, bias=False)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.c2(self.c1(x)).mean((2, 3)))


def _counts(mask):
    return [int(m.sum()) for m in mask.values()]


def _batch():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(10, 2, 7, 7, generator=gen), torch.arange(10)


def test_every_composition_keeps_the_allocation_counts():
    model = Hand()
    pairs = [
        (a, p)
        for a in [*ALLOCATIONS.names(), "snip"]
        for p in [*PLACEMENTS.names(), "snip", "lamp"]
    ]
    for alloc, place in [*pairs, ("synflow", "random"), ("erk", "synflow")]:  # iterative ones
        mask = ep.prune(model, "random", 0.5, batch=_batch(), allocation=alloc, placement=place)
        if alloc in ALLOCATIONS:
            assert _counts(mask) == allocate(alloc, SHAPES, 220), (alloc, place)
        else:  # a scorer's allocation: its own global mask's counts
            own = ep.prune(model, alloc, 0.5, batch=_batch())
            assert _counts(mask) == _counts(own), (alloc, place)


def test_magnitude_placement_keeps_each_layers_largest_weights():
    model = Hand()
    mask = ep.prune(model, "random", 0.5, allocation="erk", placement="magnitude")
    for (name, p), m in zip(ep.prunable(model).items(), mask.values(), strict=True):
        k = int(m.sum())
        top = p.detach().abs().reshape(-1).topk(k).indices
        assert m.reshape(-1)[top].all(), name
    # invert flips the placement's ranking: the same counts, each layer's smallest weights.
    low = ep.prune(model, "magnitude", 0.5, allocation="erk", invert=True)
    for (name, p), m in zip(ep.prunable(model).items(), low.values(), strict=True):
        k = int(m.sum())
        bottom = p.detach().abs().reshape(-1).topk(k, largest=False).indices
        assert m.reshape(-1)[bottom].all() and k == int(mask[name].sum()), name


def test_shuffle_ablation_and_random_placement_share_the_scorers_counts():
    model, batch = Hand(), _batch()
    snip = ep.prune(model, "snip", 0.8, batch=batch)
    shuffled = ep.ablations.shuffle(snip, seed=3)
    by_name = ep.prune(model, "random", 0.8, batch=batch, allocation="snip", placement="random")
    own = ep.prune(model, "snip", 0.8, batch=batch, placement="random")
    assert _counts(shuffled) == _counts(snip) == _counts(by_name) == _counts(own)
    assert not all(torch.equal(a, b) for a, b in zip(own.values(), snip.values(), strict=True))


def test_baseline_methods_are_their_allocation_with_random_placement():
    model = Hand()
    for name in ALLOCATIONS.names():
        assert METHODS.get(name).allocation == name
        mask = ep.prune(model, name, 0.5, seed=1)
        again = ep.prune(model, "magnitude", 0.5, allocation=name, placement="random", seed=1)
        assert all(torch.equal(a, b) for a, b in zip(mask.values(), again.values(), strict=True))
        assert _counts(mask) == allocate(name, SHAPES, 220)
    other = ep.prune(model, "erk", 0.5, seed=2)
    assert _counts(other) == allocate("erk", SHAPES, 220) and not all(
        torch.equal(a, b) for a, b in zip(other.values(), mask.values(), strict=True)
    )


def test_lamp_scores_by_hand_and_global_threshold():
    model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[3.0, -1.0], [2.0, 0.5]]))
        model[1].weight.copy_(torch.tensor([[0.1, 0.2], [0.3, 0.4]]))
    scores = ep.score(model, "lamp")
    # Squares 9, 1, 4, 0.25; ascending 0.25 < 1 < 4 < 9 with suffix sums 14.25, 14, 13, 9.
    expected = torch.tensor([[1.0, 1 / 14], [4 / 13, 0.25 / 14.25]], dtype=torch.float64)
    assert torch.allclose(scores["0.weight"], expected)
    # Second layer: squares .01 .04 .09 .16, suffix sums .30 .29 .25 .16.
    assert torch.allclose(
        scores["1.weight"], torch.tensor([[0.01 / 0.30, 0.04 / 0.29], [0.09 / 0.25, 1.0]]).double()
    )
    # Global: keep the 4 highest of all 8 LAMP scores -> 1, 1, 4/13, 0.09/.25 (not the 4 largest
    # |w|, which all sit in the first layer).
    mask = ep.prune(model, "lamp", 0.5)
    assert mask["0.weight"].tolist() == [[True, False], [True, False]]
    assert mask["1.weight"].tolist() == [[False, False], [True, True]]


def test_bad_names_and_conflicts_are_clear_errors():
    model = Hand()
    with pytest.raises(ValueError, match="unknown allocation 'nope'.*erk"):
        ep.prune(model, "random", 0.5, allocation="nope")
    with pytest.raises(ValueError, match="unknown placement 'nope'.*random"):
        resolve_placement("nope")
    with pytest.raises(ValueError, match="scope 'layer' and allocation"):
        ep.prune(model, "random", 0.5, allocation="erk", scope="layer")


@given(
    widths=st.lists(st.integers(1, 6), min_size=2, max_size=5),
    sparsity=st.floats(0.0, 0.99),
    seed=st.integers(0, 3),
)
def test_pruned_random_networks_meet_every_allocation_exactly(widths, sparsity, seed):
    layers = [nn.Linear(a, b, bias=False) for a, b in zip(widths, widths[1:], strict=False)]
    model = nn.Sequential(*layers)
    shapes = [tuple(layer.weight.shape) for layer in layers]
    total = sum(math.prod(s) for s in shapes)
    for name in ALLOCATIONS.names():
        mask = ep.prune(model, name, sparsity, seed=seed, allow_disconnected=True)
        assert _counts(mask) == allocate(name, shapes, total - round(sparsity * total))


@pytest.mark.parametrize("method", ["snip", "magnitude", "lamp"])
def test_a_scorers_allocation_with_its_own_placement_is_its_global_mask(method):
    model, batch = Hand(), _batch()
    plain = ep.prune(model, method, 0.7, batch=batch)
    split = ep.prune(model, "random", 0.7, batch=batch, allocation=method, placement=method)
    assert all(torch.equal(a, b) for a, b in zip(plain.values(), split.values(), strict=True))
