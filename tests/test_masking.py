"""Mask selection: exact counts, deterministic ties, schedules, shuffling, collapse statistics."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import reference_select
from hypothesis import example, given
from hypothesis import strategies as st
from torch import Tensor, nn

import earlyprune as ep
from earlyprune.masks.mask import density_schedule, select
from earlyprune.methods.ablations import shuffle
from earlyprune.methods.scoring import Method

# ------------------------------------------------------------------------------------ strategies

layer_specs = st.lists(
    st.one_of(
        st.tuples(st.just("linear"), st.integers(1, 12), st.integers(1, 12)),
        st.tuples(st.just("conv"), st.integers(1, 4), st.integers(1, 4), st.sampled_from([1, 3])),
    ),
    min_size=1,
    max_size=4,
)
sparsities = st.one_of(
    st.floats(0.0, 1.0, exclude_max=True, allow_nan=False),
    st.sampled_from([0.0, 0.5, 0.2, 0.36, 0.9, 0.99, 0.999]),
)


def build(specs, seed: int = 0) -> nn.Module:
    """A stack of Linear/Conv layers of the given shapes (never run forward: shapes may clash)."""
    torch.manual_seed(seed)
    layers = []
    for spec in specs:
        if spec[0] == "linear":
            layers.append(nn.Linear(spec[1], spec[2]))
        else:
            layers.append(nn.Conv2d(spec[1], spec[2], spec[3]))
    return nn.Sequential(*layers)


def kept(mask) -> int:
    return sum(int(m.sum()) for m in mask.values())


def flat(mask) -> Tensor:
    return torch.cat([m.reshape(-1) for m in mask.values()])


def recording_method(values=None, name="recorder"):
    """A Method whose every round returns fresh scores and records the mask it was given.

    Fresh scores each round mean a pruned weight would often score high: if selection ever
    revived a weight, the recorded masks would show it.
    """
    seen: list[dict[str, Tensor]] = []

    def prepare(model, batch, seed):
        gen = torch.Generator().manual_seed(seed)

        def score(mask):
            seen.append({n: m.clone() for n, m in mask.items()})
            if values is not None:
                return {n: torch.full(m.shape, values) for n, m in mask.items()}
            return {n: torch.rand(m.shape, generator=gen) for n, m in mask.items()}

        return score

    return Method(name, prepare, rounds=1, needs_batch=False, summary="test"), seen


# ------------------------------------------------------------------------------ density_schedule


@given(sparsities, st.integers(1, 120), st.integers(1, 10_000))
def test_density_schedule_follows_geometric_densities(s, rounds, total):
    counts = density_schedule(s, rounds, total)
    assert len(counts) == rounds
    assert counts[-1] == total - round(s * total)
    assert all(a >= b for a, b in zip(counts, counts[1:], strict=False))
    assert counts[0] <= total
    for n, c in enumerate(counts, start=1):
        assert abs(c - (1 - s) ** (n / rounds) * total) <= 1.0 + 1e-9


@pytest.mark.parametrize(
    ("s", "rounds", "total", "expected"),
    [
        (0.36, 2, 100, [80, 64]),
        (0.488, 3, 1000, [800, 640, 512]),
        (0.9, 1, 1234, [123]),
        (0.5, 4, 16, [13, 11, 10, 8]),  # 16·0.5^(n/4) = 13.45, 11.31, 9.51, 8
        (0.0, 3, 50, [50, 50, 50]),
    ],
)
def test_density_schedule_known_values(s, rounds, total, expected):
    assert density_schedule(s, rounds, total) == expected


def test_density_schedule_rejects_zero_rounds():
    with pytest.raises(ValueError, match="rounds"):
        density_schedule(0.5, 0, 100)


# --------------------------------------------------------------------- exact counts via prune()
# (allow_disconnected=True: these check counts; masks that empty layers are the point of some)


@given(
    specs=layer_specs,
    s=sparsities,
    scope=st.sampled_from(["global", "layer"]),
    rounds=st.integers(1, 5),
    method=st.sampled_from(["random", "magnitude"]),
    seed=st.integers(0, 3),
)
def test_prune_removes_exactly_round_s_n(specs, s, scope, rounds, method, seed):
    model = build(specs, seed)
    weights = ep.prunable(model)
    total = sum(w.numel() for w in weights.values())
    mask = ep.prune(
        model, method, s, rounds=rounds, scope=scope, seed=seed, allow_disconnected=True
    )
    assert list(mask) == list(weights)
    for n, w in weights.items():
        assert mask[n].dtype == torch.bool and mask[n].shape == w.shape
    assert total - kept(mask) == round(s * total)


@given(specs=layer_specs, s=sparsities, method=st.sampled_from(["random", "magnitude"]))
# 8 + 6 + 121 weights, 73 removed: the 121-weight layer must keep 56 (56.01), not 55.
@example(
    specs=[("linear", 1, 8), ("linear", 2, 3), ("linear", 11, 11)], s=0.537109375, method="random"
)
def test_layer_scope_one_shot_keeps_each_layer_within_one(specs, s, method):
    model = build(specs)
    mask = ep.prune(model, method, s, scope="layer", allow_disconnected=True)
    for n, m in mask.items():
        assert abs(int(m.sum()) - (1 - s) * m.numel()) < 1.0 + 1e-9, n


@given(
    specs=layer_specs,
    s=sparsities,
    rounds=st.integers(2, 5),
    method=st.sampled_from(["random", "magnitude"]),
)
# Layers of 3 and 9 weights: the 9-weight layer must keep 7 (7.03), not 6.
@example(specs=[("linear", 1, 3), ("conv", 1, 1, 3)], s=0.21875, rounds=3, method="random")
def test_layer_scope_iterative_keeps_each_layer_within_one(specs, s, rounds, method):
    model = build(specs)
    mask = ep.prune(model, method, s, scope="layer", rounds=rounds, allow_disconnected=True)
    for n, m in mask.items():
        assert abs(int(m.sum()) - (1 - s) * m.numel()) < 1.0 + 1e-9, n


def test_layer_scope_with_100_rounds_keeps_each_layer_at_its_share():
    """SynFlow's 100 rounds with scope="layer": per-round rounding must not accumulate."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3), nn.Conv2d(16, 16, 3), nn.Conv2d(16, 32, 3), nn.Linear(64, 10)
    )
    mask = ep.prune(model, "magnitude", 0.5, scope="layer", rounds=100, allow_disconnected=True)
    kept_per_layer = {n: int(m.sum()) for n, m in mask.items()}
    assert kept_per_layer == {n: m.numel() // 2 for n, m in mask.items()}


@given(
    specs=layer_specs,
    s=sparsities,
    rounds=st.integers(1, 5),
    scope=st.sampled_from(["global", "layer"]),
)
def test_pruned_weights_are_never_revived_across_rounds(specs, s, rounds, scope):
    model = build(specs)
    method, seen = recording_method()
    final = ep.prune(model, method, s, rounds=rounds, scope=scope, seed=1, allow_disconnected=True)
    masks = [*seen, final]
    for before, after in zip(masks, masks[1:], strict=False):
        for n in before:
            assert not (after[n] & ~before[n]).any(), "a pruned weight came back"
    total = sum(m.numel() for m in final.values())
    assert total - kept(final) == round(s * total)


def test_rounds_rescore_with_current_mask():
    model = build([("linear", 10, 10), ("conv", 2, 3, 3)])
    method, seen = recording_method()
    ep.prune(model, method, 0.9, rounds=4, allow_disconnected=True)
    total = 100 + 54
    assert [kept(m) for m in seen] == [total, *density_schedule(0.9, 4, total)[:-1]]


@pytest.mark.parametrize("s", [0.0, 0.3, 0.5, 0.77])
def test_all_equal_scores_remove_first_weights_in_network_order(s):
    model = build([("linear", 5, 4), ("conv", 2, 3, 3), ("linear", 3, 7)])
    method, _ = recording_method(values=1.0)
    mask = ep.prune(model, method, s, allow_disconnected=True)
    removed = ~flat(mask)
    n_remove = round(s * removed.numel())
    assert removed[:n_remove].all() and not removed[n_remove:].any()


def test_all_equal_scores_layer_scope_remove_first_weights_of_each_layer():
    model = build([("linear", 5, 4), ("conv", 2, 3, 3), ("linear", 3, 7)])
    method, _ = recording_method(values=0.0)
    mask = ep.prune(model, method, 0.5, scope="layer", allow_disconnected=True)
    for m in mask.values():
        removed = ~m.reshape(-1)
        r = int(removed.sum())
        assert removed[:r].all() and not removed[r:].any()


@given(specs=layer_specs, s=sparsities, scope=st.sampled_from(["global", "layer"]))
def test_same_inputs_give_identical_masks(specs, s, scope):
    model = build(specs)
    method, _ = recording_method(values=2.0)  # all ties: the hardest case for determinism
    a = ep.prune(model, method, s, scope=scope, allow_disconnected=True)
    b = ep.prune(model, method, s, scope=scope, allow_disconnected=True)
    assert all(torch.equal(a[n], b[n]) for n in a)
    c = ep.prune(model, "magnitude", s, scope=scope, rounds=3, allow_disconnected=True)
    d = ep.prune(model, "magnitude", s, scope=scope, rounds=3, allow_disconnected=True)
    assert all(torch.equal(c[n], d[n]) for n in c)


# --------------------------------------------------------------------------- select() directly


@st.composite
def select_cases(draw):
    shapes = draw(
        st.lists(
            st.lists(st.integers(1, 6), min_size=1, max_size=3).map(tuple), min_size=1, max_size=4
        )
    )
    seed = draw(st.integers(0, 2**16))
    gen = torch.Generator().manual_seed(seed)
    # Few distinct integer values: plenty of ties, also across layers and at the threshold.
    levels = draw(st.integers(1, 6))
    density = draw(st.floats(0.0, 1.0))
    mask = {f"l{i}.weight": torch.rand(sh, generator=gen) < density for i, sh in enumerate(shapes)}
    scores = {n: torch.randint(levels, m.shape, generator=gen).float() for n, m in mask.items()}
    alive = kept(mask)
    n_keep = draw(st.integers(0, alive))
    return scores, n_keep, mask


@given(select_cases())
def test_select_global_matches_reference(case):
    scores, n_keep, mask = case
    out = select(scores, n_keep, mask, "global")
    assert kept(out) == n_keep
    expected = reference_select(scores, n_keep, mask)
    for n in mask:
        assert out[n].shape == mask[n].shape and out[n].dtype == torch.bool
        assert not (out[n] & ~mask[n]).any()
        assert torch.equal(out[n], expected[n])


@given(select_cases())
def test_select_layer_scope_counts_and_order(case):
    scores, n_keep, mask = case
    out = select(scores, n_keep, mask, "layer")
    assert kept(out) == n_keep
    # Each layer's target is the density n_keep / N of its *original* size (so iterative rounds
    # do not accumulate rounding); a layer already below its target keeps what it has.
    d = n_keep / sum(m.numel() for m in mask.values())
    capped = any(int(mask[n].sum()) < math.ceil(d * mask[n].numel()) for n in mask)
    for n in mask:
        alive = int(mask[n].sum())
        removed = alive - int(out[n].sum())
        assert 0 <= removed <= alive
        if not capped:
            assert abs(int(out[n].sum()) - d * mask[n].numel()) < 1.0, n
        # Within the layer, the removed ones are its lowest (ties: lower index first).
        expected = reference_select({n: scores[n]}, alive - removed, {n: mask[n]})
        assert torch.equal(out[n], expected[n])


def big_case(seed: int, levels: int, density: float, sizes=(300_000, 180_000, 70_000)):
    """Over 2^19 weights: selection bounds the threshold from a strided sample; ties abound."""
    gen = torch.Generator().manual_seed(seed)
    mask = {f"l{i}.weight": torch.rand(n, generator=gen) < density for i, n in enumerate(sizes)}
    scores = {n: torch.randint(levels, m.shape, generator=gen).float() for n, m in mask.items()}
    return scores, mask


@pytest.mark.parametrize("levels", [3, 10**9])
@pytest.mark.parametrize("fraction_removed", [0.01, 0.3, 0.9])
def test_select_on_large_tensors_matches_reference(levels, fraction_removed):
    scores, mask = big_case(levels, levels, density=0.95)
    alive = kept(mask)
    n_keep = alive - round(fraction_removed * alive)
    out = select(scores, n_keep, mask)
    assert kept(out) == n_keep
    expected = reference_select(scores, n_keep, mask)
    for n in mask:
        assert torch.equal(out[n], expected[n]), n


def test_select_on_large_tensors_when_a_strided_sample_misleads():
    """Every other score is low, the rest high: a stride-2 sample sees only the low ones."""
    n = 600_000
    scores = {"a.weight": torch.arange(n, dtype=torch.float64) + 10.0}
    scores["a.weight"][::2] = -1.0
    scores["a.weight"][::4] = -2.0
    mask = {"a.weight": torch.ones(n, dtype=torch.bool)}
    for n_keep in (n // 4, n // 2 - 7, n // 2 + 7):
        out = select(scores, n_keep, mask)
        assert torch.equal(out["a.weight"], reference_select(scores, n_keep, mask)["a.weight"])


def test_select_layer_scope_on_large_tensors_matches_reference():
    scores, mask = big_case(1, 50, density=0.9, sizes=(200_000, 1_000))
    alive = kept(mask)
    out = select(scores, alive // 3, mask, "layer")
    assert kept(out) == alive // 3
    for n in mask:
        k = int(out[n].sum())
        assert torch.equal(out[n], reference_select({n: scores[n]}, k, {n: mask[n]})[n])


def test_iterative_prune_on_a_large_model_matches_hand_loop():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(400, 300), nn.Linear(300, 200), nn.Conv2d(16, 32, 3))
    weights = ep.prunable(model)
    total = sum(w.numel() for w in weights.values())
    assert total > 1 << 17
    mask = {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}
    scores = {n: w.detach().abs() for n, w in weights.items()}
    for n_keep in density_schedule(0.95, 4, total):
        mask = reference_select(scores, n_keep, mask)
    got = ep.prune(model, "magnitude", 0.95, rounds=4, allow_disconnected=True)
    for n in mask:
        assert torch.equal(got[n], mask[n]), n


def test_select_never_revives_even_when_dead_weights_score_highest():
    mask = {"a": torch.tensor([True, False, True, False]), "b": torch.tensor([False, True])}
    scores = {"a": torch.tensor([1.0, 100.0, 2.0, 100.0]), "b": torch.tensor([100.0, 3.0])}
    out = select(scores, 2, mask)
    assert out["a"].tolist() == [False, False, True, False]
    assert out["b"].tolist() == [False, True]


def test_select_rejects_nan_scores():
    mask = {"a": torch.ones(3, dtype=torch.bool)}
    with pytest.raises(ValueError, match="NaN"):
        select({"a": torch.tensor([1.0, float("nan"), 0.0])}, 1, mask)


def test_select_rejects_bad_scope_and_too_many_kept():
    mask = {"a": torch.ones(3, dtype=torch.bool)}
    with pytest.raises(ValueError, match="global"):
        select({"a": torch.zeros(3)}, 1, mask, scope="per-layer")
    with pytest.raises(ValueError):
        select({"a": torch.zeros(3)}, 4, mask)


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_prune_rejects_nan_scores(scope):
    def prepare(model, batch, seed):
        return lambda mask: {n: torch.full(m.shape, float("nan")) for n, m in mask.items()}

    model = build([("linear", 3, 3)])
    with pytest.raises(ValueError, match="NaN"):
        ep.prune(model, Method("nan", prepare), 0.5, scope=scope)


def test_infinite_scores_are_ordered_not_rejected():
    mask = {"a": torch.ones(4, dtype=torch.bool)}
    scores = {"a": torch.tensor([float("inf"), -float("inf"), 0.0, 1.0])}
    assert select(scores, 2, mask)["a"].tolist() == [True, False, False, True]


# -------------------------------------------------------------------------------------- shuffle


def test_shuffle_keeps_layer_counts_and_moves_positions():
    model = build([("linear", 40, 30), ("conv", 4, 8, 3)])
    mask = ep.prune(model, "magnitude", 0.7, allow_disconnected=True)
    a = shuffle(mask, seed=0)
    assert list(a) == list(mask)
    for n in mask:
        assert a[n].shape == mask[n].shape and a[n].dtype == torch.bool
        assert int(a[n].sum()) == int(mask[n].sum())
        assert not torch.equal(a[n], mask[n])
    b = shuffle(mask, seed=0)
    c = shuffle(mask, seed=1)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert any(not torch.equal(a[n], c[n]) for n in a)


def test_shuffle_is_uniform_over_positions():
    """Each position is kept with probability ≈ the layer's density (not e.g. a rotation)."""
    mask = {"w": torch.zeros(200, dtype=torch.bool)}
    mask["w"][:50] = True
    hits = torch.stack([shuffle(mask, seed=i)["w"].float() for i in range(400)]).mean(0)
    assert (hits - 0.25).abs().max() < 0.12
    assert hits[:50].mean() < 0.3  # the original positions are not favoured


# ------------------------------------------------------------------- densities, neuron collapse


class CollapseNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(2, 4, 3)  # 18 weights per output channel
        self.conv_b = nn.Conv2d(4, 5, 1)  # 4 weights per output channel
        self.fc = nn.Linear(5, 3)


def collapse_mask() -> dict[str, Tensor]:
    a = torch.ones(4, 18, dtype=torch.bool)
    a[0] = False  # channel 0: 100 % pruned
    a[1, :10] = False  # 10/18 ≈ 55.6 %
    a[2, :9] = False  # exactly 50 %
    b = torch.ones(5, 4, dtype=torch.bool)
    b[0] = False  # 100 %
    b[1, :2] = False  # 50 %
    b[2, :1] = False  # 25 %
    b[4] = False  # 100 %
    fc = torch.zeros(3, 5, dtype=torch.bool)  # entirely pruned, but not a conv: excluded
    return {
        "conv_a.weight": a.reshape(4, 2, 3, 3),
        "conv_b.weight": b.reshape(5, 4, 1, 1),
        "fc.weight": fc,
    }


def test_neuron_collapse_known_shares():
    model, mask = CollapseNet(), collapse_mask()
    full = ep.neuron_collapse(model, mask, threshold=1.0)
    assert full["per_layer"] == pytest.approx({"conv_a.weight": 1 / 4, "conv_b.weight": 2 / 5})
    assert full["overall"] == pytest.approx(3 / 9)
    half = ep.neuron_collapse(model, mask, threshold=0.5)
    assert half["per_layer"] == pytest.approx({"conv_a.weight": 3 / 4, "conv_b.weight": 3 / 5})
    assert half["overall"] == pytest.approx(6 / 9)
    default = ep.neuron_collapse(model, mask)
    assert default == full
    none = ep.neuron_collapse(model, {n: torch.ones_like(m) for n, m in mask.items()})
    assert none["per_layer"] == {"conv_a.weight": 0.0, "conv_b.weight": 0.0}
    assert none["overall"] == 0.0


def test_neuron_collapse_rejects_bad_threshold_and_mask():
    model, mask = CollapseNet(), collapse_mask()
    with pytest.raises(ValueError, match="threshold"):
        ep.neuron_collapse(model, mask, threshold=1.5)
    del mask["fc.weight"]
    with pytest.raises(ValueError, match="fc.weight"):
        ep.neuron_collapse(model, mask)


def test_layer_and_overall_density():
    mask = collapse_mask()
    assert ep.layer_density(mask) == pytest.approx(
        {"conv_a.weight": 35 / 72, "conv_b.weight": 9 / 20, "fc.weight": 0.0}
    )
    assert list(ep.layer_density(mask)) == list(mask)
    assert ep.overall_density(mask) == pytest.approx(44 / 107)
    assert math.isclose(ep.overall_density({"x": torch.ones(3, dtype=torch.bool)}), 1.0)
