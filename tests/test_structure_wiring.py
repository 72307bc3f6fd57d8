"""The structure axis wired through spec, ``ep.prune``, the pipeline, ``speed`` and the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import earlyprune as ep
from earlyprune import cli
from earlyprune.core.errors import SpecError
from earlyprune.masks.channels import kept_channels, trace_channels
from earlyprune.masks.mask import prunable
from earlyprune.masks.shrink import shrink
from earlyprune.masks.structure import achieved_sparsity, check_structure, nm_eligible
from earlyprune.run.spec import RunSpec
from earlyprune.sweeps.toml_grid import grid_specs

TINY = ["--dataset", "fashion-mnist-mini", "--epochs", "0.1", "--quiet"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def call(argv, capsys):
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def _run(store, capsys, *flags):
    code, out, err = call(["run", *TINY, "--method", "snip", *flags, "--store", str(store)], capsys)
    assert code == 0, err
    (run_dir,) = [p for p in Path(store).iterdir() if (p / "result.json").is_file()]
    return run_dir


def test_unstructured_is_out_of_the_id_and_structures_are_canonical():
    base = RunSpec(dataset="fashion-mnist-mini", method="snip", sparsity=0.5)
    assert RunSpec(**{**base.to_dict(), "structure": "unstructured"}).run_id == base.run_id
    upper = base.replace(structure="NM:2:4")
    assert upper.structure == "nm:2:4" and upper.run_id == base.replace(structure="nm:2:4").run_id
    assert upper.run_id != base.run_id


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"structure": "nm:5"}, "unknown structure"),
        ({"structure": "nm:2:4", "sparsity": 0.9}, "fixes the sparsity at 0.5"),
        ({"structure": "nm:2:4", "allocation": "erk"}, "leave allocation and scope out"),
        ({"structure": "channel", "method": "dense", "sparsity": 0.0}, "needs a pruning method"),
        ({"structure": "fanin", "method": "rigl"}, "not supported for method"),
    ],
)
def test_bad_structure_specs_are_one_line(fields, says):
    base = {"dataset": "fashion-mnist-mini", "method": "snip", "sparsity": 0.5}
    with pytest.raises(SpecError, match=says):
        RunSpec(**{**base, **fields})


def test_cli_bad_structure_is_one_line_exit_2_nothing_written(tmp_path, capsys):
    store = tmp_path / "runs"
    flags = ["--sparsity", "0.5", "--structure", "nm:2:3:1", "--store", str(store)]
    code, _, err = call(["run", *TINY, "--method", "snip", *flags], capsys)
    assert code == 2 and "unknown structure" in err and len(err.strip().splitlines()) == 1
    assert not store.exists() or not any(store.iterdir())


def test_cli_nm_run_end_to_end_stores_an_exact_2_4_mask(tmp_path, capsys):
    run_dir = _run(tmp_path, capsys, "--sparsity", "0.5", "--structure", "nm:2:4")
    mask = torch.load(run_dir / "mask.pt")
    result = json.loads((run_dir / "result.json").read_text())
    assert result["spec"]["structure"] == "nm:2:4"
    assert check_structure(mask, "nm:2:4") == []
    eligible = [n for n, m in mask.items() if nm_eligible(tuple(m.shape), 4)]
    assert eligible and all(mask[n].float().mean() == 0.5 for n in eligible)
    assert result["density"] == pytest.approx(1 - achieved_sparsity(mask))
    assert result["density"] > 0.5  # the 1-channel stem and the 10-way classifier stay dense


@pytest.mark.parametrize("net", ["resnet20", "vgg16"])
def test_prune_structure_nm_is_exact_and_invert_keeps_it(net):
    model = ep.create_model(net, 10)
    x, y = torch.randn(8, 3, 32, 32), torch.arange(8) % 10
    mask = ep.prune(model, "snip", 0.5, batch=(x, y), structure="nm:2:4")
    worst = ep.prune(model, "snip", 0.5, batch=(x, y), structure="nm:2:4", invert=True)
    for m in (mask, worst):
        assert check_structure(m, "nm:2:4") == []
        for name, k in m.items():
            groups = k.movedim(1, -1).reshape(-1, 4) if k.dim() > 1 else None
            if nm_eligible(tuple(k.shape), 4):
                assert bool((groups.sum(1) == 2).all()), name
            else:
                assert bool(k.all()), name
    assert any(not torch.equal(mask[n], worst[n]) for n in mask)
    with pytest.raises(ValueError, match="fixes the sparsity"):
        ep.prune(model, "snip", 0.9, batch=(x, y), structure="nm:2:4")


def test_prune_fanin_and_channel_follow_the_method_counts():
    model = ep.create_model("resnet20", 10)
    x, y = torch.randn(8, 3, 32, 32), torch.arange(8) % 10
    fanin = ep.prune(model, "snip", 0.8, batch=(x, y), structure="fanin")
    assert check_structure(fanin, "fanin") == []
    plain = ep.prune(model, "snip", 0.8, batch=(x, y))
    for name, k in fanin.items():  # ⌊count / units⌋ per unit: at most the layer's count
        units = k.shape[0]
        per_unit = max(1, int(plain[name].sum()) // units)
        assert int(k.sum()) == min(per_unit, k[0].numel()) * units, name
    channel = ep.prune(model, "snip", 0.8, batch=(x, y), structure="channel")
    graph = trace_channels(model)
    keep = kept_channels(graph, channel)
    masked = ep.create_model("resnet20", 10).eval()
    masked.load_state_dict(model.state_dict())
    ep.apply_mask(masked, channel)
    from earlyprune.masks.channels import silence_channels

    silence_channels(masked, channel)
    small = shrink(masked, channel)
    assert sum(int(k.sum()) for k in keep.values()) < sum(k.numel() for k in keep.values())
    with torch.no_grad():
        assert torch.allclose(masked(x), small(x), atol=1e-4)


def test_sweep_axis_gives_one_run_per_structure():
    base = {"dataset": "fashion-mnist-mini", "method": "snip", "sparsity": 0.5}
    specs, _ = grid_specs(base, {"structure": ["unstructured", "fanin", "nm:2:4"]}, [], False)
    pruned = [s for s in specs if s.method == "snip"]
    assert sorted(s.structure for s in pruned) == ["fanin", "nm:2:4", "unstructured"]
    assert len({s.run_id for s in pruned}) == 3


def test_shuffle_under_channel_keeps_whole_channels_in_the_pipeline(tmp_path, capsys):
    run_dir = _run(
        tmp_path, capsys, "--sparsity", "0.8", "--structure", "channel", "--ablation", "shuffle"
    )
    mask = torch.load(run_dir / "mask.pt")
    model = ep.create_model("smallcnn", 10)
    for name, k in mask.items():
        if name != "fc2.weight":  # the output layer keeps all its units
            rows = k.reshape(k.shape[0], -1)
            alive = rows.any(1)
            assert bool((rows[~alive] == 0).all()), name
    assert set(mask) == set(prunable(model))


def test_speed_of_a_channel_run_writes_speed_json_and_the_report_shows_it(tmp_path, capsys):
    store = tmp_path / "runs"
    run_dir = _run(store, capsys, "--sparsity", "0.8", "--structure", "channel")
    model = ep.create_model("smallcnn", 10)
    model.load_state_dict(torch.load(run_dir / "final.pt")["model"])
    graph = trace_channels(model)
    keep = kept_channels(graph, torch.load(run_dir / "mask.pt"))
    modules = dict(model.named_modules())
    assert any(not bool(k.all()) for k in keep.values())
    for bn, g in graph.norms.items():  # trained, yet the pruned channels stayed silent
        assert not modules[bn].weight[~keep[g]].any() and not modules[bn].bias[~keep[g]].any()
    code, out, err = call(["speed", str(run_dir), "--repeats", "1", "--batch-size", "2"], capsys)
    assert code == 0, err
    assert "speedup" in out and "outputs equal" in out  # training kept pruned channels silent
    speed = json.loads((run_dir / "speed.json").read_text())
    assert speed["outputs_equal"] is True and speed["speedup"] > 0
    assert speed["run_id"] == run_dir.name
    code, _, err = call(["report", str(store), "--out", str(tmp_path / "rep")], capsys)
    assert code == 0, err
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "Measured speed" in page and run_dir.name in page
    rows = (tmp_path / "rep" / "speed.csv").read_text().splitlines()
    assert len(rows) == 2 and "snip[channel]" in rows[1]


def test_speed_of_a_missing_run_is_one_line_exit_2(tmp_path, capsys):
    code, _, err = call(["speed", "abc", "--store", str(tmp_path)], capsys)
    assert code == 2 and "no run 'abc'" in err and len(err.strip().splitlines()) == 1
