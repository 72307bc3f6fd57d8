"""The benchmark scripts run end to end at their smoke-test size (no timing is asserted).

Also pins the fast path of mask selection (sampled bound, dense marking), which the masking
tests' small tensors never reach, against a plain stable sort.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest
import torch
from conftest import reference_select

from earlyprune.masks import mask as masking

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCH))
    try:
        yield lambda name: importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCH))


def _json_line(capsys) -> dict:
    lines = capsys.readouterr().out.strip().splitlines()
    return json.loads(lines[-1])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("module", "keys"),
    [
        ("bench_training", ["masked_over_dense", "defaults_over_naive", "rigl_over_static"]),
        ("bench_memory", ["methods", "max_working_copies"]),
    ],
)
def test_benchmark_prints_one_json_object(bench, capsys, module, keys):
    result = bench(module).main(["--tiny", "--device", "cpu"])
    printed = _json_line(capsys)
    assert printed == json.loads(json.dumps(result))
    for key in keys:
        assert key in printed, key
    assert printed["device"].startswith("cpu") and printed["size"] == "tiny"


@pytest.mark.slow
def test_scoring_benchmark_counts_the_passes_each_method_makes(bench, capsys):
    result = bench("bench_scoring").main(["--tiny", "--device", "cpu"])
    assert _json_line(capsys) == json.loads(json.dumps(result))
    assert {"synflow_resnet20_s", "selection"} <= set(result)
    methods = result["models"]["resnet20"]["methods"]
    assert (methods["snip"]["forward_passes"], methods["snip"]["backward_passes"]) == (1, 1)
    grasp = methods["grasp"]
    assert (grasp["forward_passes"], grasp["backward_passes"], grasp["backward_with_graph"]) == (
        1,
        2,
        1,
    )
    assert methods["synflow"]["forward_passes"] == 3  # one per round at the tiny size
    assert all(abs(m["density"] - 0.1) < 1e-4 for m in methods.values())


@pytest.mark.slow
def test_run_all_writes_markdown_and_headline_json(bench, tmp_path, capsys):
    md = tmp_path / "BENCHMARKS.md"
    md.write_text("# notes kept\n\n<!-- results:begin -->\nold\n<!-- results:end -->\n\ntail\n")
    out = tmp_path / "b.json"
    args = ["--tiny", "--device", "cpu", "--only", "precision", "--md", str(md), "--json", str(out)]
    bench("run_all").main(args)
    text = md.read_text()
    assert text.startswith("# notes kept") and text.rstrip().endswith("tail")
    assert "old" not in text and "bf16 vs fp32, smallcnn" in text and "commit" in text
    data = json.loads(out.read_text())
    for key in (
        "masked_over_dense",
        "defaults_over_naive",
        "synflow_resnet20_s",
        "synflow_vgg16_s",
        "loader_over_train",
    ):
        assert key in data  # None: not run in this call
    assert "error" not in data["results"]["precision"]


@pytest.mark.parametrize("levels", [0, 3, 50])
@pytest.mark.parametrize("removed_share", [0.001, 0.03, 0.2, 0.5, 0.7, 0.97])
def test_selection_fast_paths_match_a_stable_sort(monkeypatch, levels, removed_share):
    # Small thresholds send small tensors down the sampled-bound and dense-marking paths.
    monkeypatch.setattr(masking, "_DIRECT", 64)
    monkeypatch.setattr(masking, "_SAMPLE", 2048)
    gen = torch.Generator().manual_seed(levels + int(removed_share * 1000))
    shapes = [(40, 30), (7,), (64, 8, 3, 3)]
    mask = {f"l{i}": torch.rand(sh, generator=gen) < 0.8 for i, sh in enumerate(shapes)}
    if levels:  # few distinct values: ties across layers and at the threshold
        scores = {
            n: torch.randint(levels, m.shape, generator=gen).double() for n, m in mask.items()
        }
    else:
        scores = {
            n: torch.rand(m.shape, generator=gen, dtype=torch.float64) for n, m in mask.items()
        }
    alive = sum(int(m.sum()) for m in mask.values())
    n_keep = alive - round(removed_share * alive)
    out = masking.select(scores, n_keep, mask)
    expected = reference_select(scores, n_keep, mask)
    assert all(torch.equal(out[n], expected[n]) for n in mask)


@pytest.mark.parametrize("planted", [0.0, 5.0])
def test_selection_falls_back_when_the_sample_misleads(monkeypatch, planted):
    monkeypatch.setattr(masking, "_DIRECT", 64)
    monkeypatch.setattr(masking, "_SAMPLE", 2048)
    n = 20_000
    stride = n // 2048
    scores = torch.rand(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 1
    scores[::stride] = planted  # the sample sees only these: its bound admits too few candidates
    mask = {"w": torch.ones(n, dtype=torch.bool)}
    for n_remove in (3000, 15_000):
        out = masking.select({"w": scores}, n - n_remove, mask)
        assert torch.equal(out["w"], reference_select({"w": scores}, n - n_remove, mask)["w"])


def test_compile_benchmark_reports_the_ratio_to_eager(bench, capsys, monkeypatch):
    # dynamo's eager backend: the script's wiring without inductor's build (seconds, not ~17)
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda net, **kw: real(net, backend="eager", **kw))
    result = bench("bench_compile").main(["--tiny", "--device", "cpu"])
    assert _json_line(capsys) == json.loads(json.dumps(result))
    assert result["network"] == "smallcnn" and result["size"] == "tiny"
    assert result["compiled_over_eager"] > 0 and result["eager_images_per_s"] > 0
