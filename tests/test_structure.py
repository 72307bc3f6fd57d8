"""Structured sparsity (issue 25): N:M groups, constant fan-in, whole channels, ablations, speed."""

from __future__ import annotations

import json
from collections import OrderedDict

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import earlyprune as ep
from earlyprune.apps.speed import magnitude_mask, main, measure_speed
from earlyprune.masks.channel_select import channel_scores, channels_to_mask
from earlyprune.masks.channels import (
    kept_channels,
    silence_channels,
    trace_channels,
)
from earlyprune.masks.shrink import shrink
from earlyprune.masks.structure import (
    achieved_sparsity,
    check_structure,
    nm_eligible,
    parse_structure,
    select_structured,
)
from earlyprune.masks.structured_ablations import invert_structured, shuffle_structured


class UserNet(nn.Module):
    """A user-style network: a residual add written by hand, a bias conv, a flatten → Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.body = nn.Conv2d(16, 16, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.head = nn.Linear(16 * 4 * 4, 32)
        self.out = nn.Linear(32, 5)

    def forward(self, x):
        a = torch.relu(self.bn(self.stem(x)))
        a = a + torch.relu(self.bn2(self.body(a)))
        a = nn.functional.adaptive_avg_pool2d(a, 4).flatten(1)
        return self.out(torch.relu(self.head(a)))


NETS = {
    "resnet20": (lambda: ep.create_model("resnet20", 10), (3, 32, 32)),
    "vgg16": (lambda: ep.create_model("vgg16", 10), (3, 32, 32)),
    "smallcnn": (lambda: ep.create_model("smallcnn", 10), (1, 28, 28)),
    "lenet": (lambda: ep.create_model("lenet_300_100", 10), (1, 28, 28)),
    "user": (UserNet, (3, 8, 8)),
}


def _setup(name, sparsity=0.5, seed=0):
    torch.manual_seed(seed)
    model = NETS[name][0]()
    params = ep.prunable(model)
    scores = {n: torch.randn(p.shape) for n, p in params.items()}
    counts = {n: p.numel() - round(sparsity * p.numel()) for n, p in params.items()}
    return model, scores, counts


def test_parse_structure():
    assert parse_structure("nm:2:4") == parse_structure(" NM:2:4 ")
    assert str(parse_structure("nm:1:8")) == "nm:1:8"
    for bad in ("nm:4:4", "nm:0:4", "nm:2", "block", "", 3):
        with pytest.raises(ValueError, match="structure") as err:
            parse_structure(bad)
        assert "\n" not in str(err.value)


@pytest.mark.parametrize("net", ["resnet20", "vgg16", "user"])
def test_nm_exact_groups_on_every_eligible_layer(net):
    model, scores, _ = _setup(net)
    mask = select_structured(scores, "nm:2:4", None)
    eligible = [n for n, m in mask.items() if nm_eligible(tuple(m.shape), 4)]
    assert eligible  # the convs with 16k input channels
    for name, m in mask.items():
        if name not in eligible:
            assert bool(m.all()), f"{name} is skipped by ASP's rule, so it stays dense"
            continue
        groups = m.movedim(1, -1).reshape(-1, 4)  # ASP's layout: input channels last
        assert bool((groups.sum(1) == 2).all()), name
        # the kept two are the best two of each group
        s = scores[name].movedim(1, -1).reshape(-1, 4)
        kept_min = s.masked_fill(~groups, float("inf")).min(1).values
        dropped_max = s.masked_fill(groups, -float("inf")).max(1).values
        assert bool((kept_min >= dropped_max).all())
    kept = sum(int(m.sum()) for m in mask.values())
    total = sum(m.numel() for m in mask.values())
    assert achieved_sparsity(mask) == (total - kept) / total < 0.5


def test_nm_skips_the_stem_and_the_classifier():
    model, scores, _ = _setup("resnet20")
    mask = select_structured(scores, "nm:2:4", None)
    assert bool(mask["conv.weight"].all()) and bool(mask["fc.weight"].all())
    assert not bool(mask["blocks.0.conv1.weight"].all())


@settings(max_examples=30, deadline=None)
@given(
    out=st.sampled_from([8, 16]),
    cin=st.sampled_from([16, 32]),
    k=st.sampled_from([1, 3]),
    nm=st.sampled_from([(1, 4), (2, 4), (3, 4), (2, 8)]),
    ties=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_nm_property(out, cin, k, nm, ties, seed):
    n, m = nm
    gen = torch.Generator().manual_seed(seed)
    s = torch.randn(out, cin, k, k, generator=gen)
    if ties:
        s = s.round()  # many equal scores: the tie rule decides, deterministically
    mask = select_structured({"w": s}, f"nm:{n}:{m}", None)["w"]
    groups = mask.movedim(1, -1).reshape(-1, m)
    assert bool((groups.sum(1) == n).all())
    assert torch.equal(mask, select_structured({"w": s}, f"nm:{n}:{m}", None)["w"])
    if ties:  # among equal scores the earlier weight goes first
        sg = s.movedim(1, -1).reshape(-1, m)
        for g in range(min(sg.shape[0], 20)):
            dropped = (~groups[g]).nonzero().flatten().tolist()
            kept = groups[g].nonzero().flatten().tolist()
            for d in dropped:
                for kk in kept:
                    if sg[g, d] == sg[g, kk]:
                        assert d < kk


@settings(max_examples=30, deadline=None)
@given(
    units=st.integers(1, 12),
    fan=st.integers(1, 40),
    density=st.floats(0.0, 1.0),
    seed=st.integers(0, 10_000),
)
def test_fanin_property(units, fan, density, seed):
    s = torch.randn(units, fan, generator=torch.Generator().manual_seed(seed)).round()
    count = round(density * units * fan)
    mask = select_structured({"w": s}, "fanin", {"w": count})["w"]
    k = min(fan, max(1, count // units))
    assert bool((mask.sum(1) == k).all())
    for row, srow in zip(mask, s, strict=True):
        if 0 < k < fan:
            assert float(srow[row].min()) >= float(srow[~row].max())


@pytest.mark.parametrize("net", ["resnet20", "vgg16", "lenet", "user"])
def test_fanin_equal_per_unit(net):
    model, scores, counts = _setup(net, 0.8)
    mask = select_structured(scores, "fanin", counts)
    assert check_structure(mask, "fanin") == []
    for name, m in mask.items():
        per_unit = m.reshape(m.shape[0], -1).sum(1)
        assert int(per_unit[0]) == max(1, counts[name] // m.shape[0])
    assert check_structure({"w": torch.tensor([[True, False], [True, True]])}, "fanin") == ["w"]


def test_resnet20_residual_ties():
    model, scores, counts = _setup("resnet20", 0.7)
    graph = trace_channels(model)
    tied = {g for g in graph.groups if len(g) > 1}
    assert (
        "conv.weight",
        "blocks.0.conv2.weight",
        "blocks.1.conv2.weight",
        "blocks.2.conv2.weight",
    ) in tied
    assert any("blocks.3.shortcut.0.weight" in g and "blocks.5.conv2.weight" in g for g in tied)
    mask = select_structured(scores, "channel", counts, model=model)
    keep = kept_channels(graph, mask)
    for g, names in enumerate(graph.groups):
        rows = [mask[n].reshape(mask[n].shape[0], -1).any(1) for n in names]
        for r in rows:  # every tied layer keeps exactly the group's channels
            assert torch.equal(r, keep[g])
        if g in graph.fixed:
            assert bool(keep[g].all())
        elif len(names) > 1:
            assert not bool(keep[g].all())
    assert bool(mask["fc.weight"].any(1).all()), "the output layer keeps all its units"
    assert 0.6 < achieved_sparsity(mask) < 0.8


def test_user_net_ties_and_output():
    model, scores, counts = _setup("user", 0.6)
    graph = trace_channels(model)
    assert ("stem.weight", "body.weight") in graph.groups
    assert graph.inputs["head.weight"][1] == 16  # 4×4 columns per channel after the flatten
    assert graph.group_of["out.weight"] in graph.fixed


def test_global_mean_pooling_passes_channels_a_channel_mean_does_not():
    # The paper's networks pool with x.mean((2, 3)) (deterministic on CUDA): the classifier reads
    # the last conv's channels through it; a mean over the channels leaves none to follow.
    class Pool(nn.Module):
        def __init__(self, dims):
            super().__init__()
            self.conv, self.fc, self.dims = nn.Conv2d(3, 4, 1), nn.Linear(4, 2), dims

        def forward(self, x):
            return self.fc(self.conv(x).mean(self.dims))

    spatial = trace_channels(Pool((2, 3)))
    assert spatial.inputs["fc.weight"][0] == spatial.group_of["conv.weight"]
    over_channels = trace_channels(Pool(1))
    assert "fc.weight" not in over_channels.inputs  # read as the network's input: no channels


def test_channel_refuses_concat():
    class Cat(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 4, 1)

        def forward(self, x):
            return torch.cat([self.a(x), self.b(x)], 1)

    with pytest.raises(ValueError, match="concatenation"):
        trace_channels(Cat())


@pytest.mark.parametrize("net", ["resnet20", "vgg16", "smallcnn", "lenet", "user"])
def test_shrunk_network_equals_masked(net):
    model, scores, counts = _setup(net, 0.6)
    shape = NETS[net][1]
    x = torch.randn(4, *shape)
    model.train()
    with torch.no_grad():
        for _ in range(3):  # non-trivial BatchNorm running statistics
            model(torch.randn(8, *shape))
    model.eval()
    mask = select_structured(scores, "channel", counts, model=model)
    ep.apply_mask(model, mask)
    silence_channels(model, mask)
    small = shrink(model, mask)
    kept = sum(int(m.sum()) for m in mask.values())
    assert sum(p.numel() for p in ep.prunable(small).values()) == kept
    with torch.no_grad():
        torch.testing.assert_close(small(x), model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("structure", ["nm:2:4", "fanin", "channel", "unstructured"])
@pytest.mark.parametrize("net", ["resnet20", "user"])
def test_ablations_keep_the_structure(structure, net):
    model, scores, counts = _setup(net, 0.7)
    mask = select_structured(scores, structure, counts, model=model)
    shuffled = shuffle_structured(mask, structure, seed=3, model=model)
    assert not all(torch.equal(mask[n], shuffled[n]) for n in mask)
    assert torch.equal(
        shuffled[next(iter(mask))],
        shuffle_structured(mask, structure, 3, model)[next(iter(mask))],
    )
    worst = invert_structured(scores, structure, counts, model=model)
    for ablated in (shuffled, worst):
        assert check_structure(ablated, structure) == []
        for n in mask:  # same counts per layer (channel: per group, so per layer too)
            assert int(ablated[n].sum()) == int(mask[n].sum()), (structure, n)
    if structure == "channel":
        graph = trace_channels(model)
        for ablated in (shuffled, worst):
            assert torch.equal(
                channels_to_mask(
                    graph,
                    kept_channels(graph, ablated),
                    {n: tuple(m.shape) for n, m in mask.items()},
                )["fc.weight" if net == "resnet20" else "out.weight"],
                ablated["fc.weight" if net == "resnet20" else "out.weight"],
            )
    # invert keeps the worst: its kept weights score lower than the best mask's on average
    if structure == "channel":  # by the groups' L1 aggregate of the channels they keep
        graph = trace_channels(model)
        agg = channel_scores(graph, scores)
        best, bad = kept_channels(graph, mask), kept_channels(graph, worst)
        for g in agg:
            if g not in graph.fixed:
                assert float(agg[g][bad[g]].mean()) < float(agg[g][best[g]].mean())
        return
    for n in mask:
        if not bool(mask[n].all()):
            assert float(scores[n][worst[n]].mean()) < float(scores[n][mask[n]].mean()), n


@pytest.mark.parametrize("structure", ["unstructured", "fanin", "channel"])
def test_speed_runs_on_cpu_and_outputs_match(structure):
    model = ep.create_model("smallcnn", 10)
    mask = magnitude_mask(model, structure, 0.8)
    result = measure_speed(model, mask, structure, (1, 28, 28), "cpu", batch_size=4, repeats=1)
    assert result["skipped"] is None and result["outputs_equal"] is True
    assert result["speedup"] > 0 and result["max_abs_diff"] < 1e-4
    json.dumps(result)


def test_speed_nm_without_gpu_says_why(tmp_path, capsys):
    out = tmp_path / "speed.json"
    code = main(
        ["--model", "smallcnn", "--structure", "nm:2:4", "--repeats", "1", "--json", str(out)]
    )
    assert code == 0
    result = json.loads(out.read_text())
    if not torch.cuda.is_available():
        assert result["speedup"] is None and "CUDA" in result["skipped"]
    assert "nm:2:4" in capsys.readouterr().out


def test_speed_main_prints_speedup_and_refuses_bad_structure(capsys):
    assert (
        main(
            [
                "--model",
                "smallcnn",
                "--structure",
                "channel",
                "--sparsity",
                "0.5",
                "--repeats",
                "1",
                "--batch-size",
                "2",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "speedup" in out and "outputs equal (max |Δ| = " in out
    for bad in ("nm:1:4", "blocks"):
        assert main(["--structure", bad, "--model", "smallcnn"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err


def test_sequential_model_traces():
    model = nn.Sequential(OrderedDict(a=nn.Linear(6, 8), r=nn.ReLU(), b=nn.Linear(8, 3)))
    graph = trace_channels(model)
    assert graph.inputs["b.weight"] == (graph.group_of["a.weight"], 1)
    assert graph.group_of["b.weight"] in graph.fixed
