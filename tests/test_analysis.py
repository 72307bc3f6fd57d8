"""earlyprune.analysis on a synthetic store whose numbers are known by construction."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest

from earlyprune.analysis import (
    load_results,
    matching_sparsity,
    summarize,
    summary_text,
    tables,
    write_report,
)
from earlyprune.analysis.aggregate import focus_sparsity
from earlyprune.core.errors import StoreError

LAYERS = {"conv1.weight": 432, "layer1.0.conv1.weight": 2304, "fc.weight": 640}
GRID = (0.2, 0.36, 0.488, 0.59, 0.672)
PNG = b"\x89PNG\r\n\x1a\n"


def write_run(store: Path, run_id: str, *, status: str = "ok", acc: float | None = None, **spec):
    """Writes one ``<store>/<run_id>/result.json`` in the pipeline's schema."""
    spec = {
        "model": "resnet20",
        "dataset": "cifar10",
        "preset": "resnet20_cifar10",
        "ablation": "none",
        "prune_step": 0,
        "rounds": None,
        "scope": "global",
        "seed": 0,
        "init": "kaiming_fan_in",
        **spec,
    }
    sparsity = spec.setdefault("sparsity", 0.0)
    density = 1.0 - sparsity
    ok = status == "ok"
    result = {
        "run_id": run_id,
        "spec": spec,
        "status": status,
        "error": None if ok else f"Traceback ...\nRuntimeError: {status} run",
        "test_accuracy": acc,
        "best_test_accuracy": None if acc is None else acc + 0.001,
        "density": density,
        "curve": [],
        "timings": {"total_s": 1.0},
    }
    if spec["method"] != "dense" and spec["model"] == "resnet20":
        # Each method its own layer profile and collapse, so figures show distinct lines.
        k = 1 + 0.25 * (len(spec["method"]) % 5)
        result["layer_density"] = {
            "conv1.weight": min(1.0, k * density),
            "layer1.0.conv1.weight": density,
            "fc.weight": density / k,
        }
        result["layer_numel"] = LAYERS
        share = round(k * sparsity / 5, 4)
        result["neuron_collapse"] = {
            "thresholds": [0.5, 0.9, 0.99, 1.0],
            "overall": [min(1.0, 3 * share), 2 * share, 1.5 * share, share],
            "per_layer": {"conv1.weight": [0.0, 0.0, 0.0, 0.0]},
        }
    if spec["method"] == "dense":
        lrs = [0.1, 0.1, 0.01, 0.001]
        result["curve"] = [
            {
                "epoch": e + 1,
                "step": 100 * (e + 1),
                "lr": lr,
                "train_loss": 1.0,
                "test_accuracy": 0.5,
            }
            for e, lr in enumerate(lrs)
        ]
    folder = store / run_id
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps(result))


def seeds(store: Path, prefix: str, accs: list[float], **spec) -> None:
    for seed, acc in enumerate(accs):
        write_run(store, f"{prefix}-s{seed}", acc=acc, seed=seed, **spec)


def around(mean: float) -> list[float]:
    """Three seeds with the given mean and std 0.001."""
    return [mean - 0.001, mean, mean + 0.001]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("store")
    # Dense: mean 0.920, std 0.002.
    seeds(root, "dense", [0.920, 0.922, 0.918], method="dense")
    # Magnitude after training: drops -0.001, 0.0015, 0.002 (= dense std: the boundary), 0.0025.
    for s, m in zip(GRID, (0.921, 0.9185, 0.918, 0.9175, 0.917), strict=True):
        seeds(root, f"mat{s}", around(m), method="magnitude_after_training", sparsity=s)
    for i, method in enumerate(("random", "magnitude", "snip", "grasp", "grasp_magnitude")):
        for j, s in enumerate(GRID[:4]):
            accs = around(0.91 - 0.01 * j - 0.001 * i)
            if method == "snip" and s == 0.59:
                accs = accs[::2]  # a cell with fewer seeds
            seeds(root, f"{method}{s}", accs, method=method, sparsity=s)
    for j, s in enumerate(GRID[:4]):
        seeds(root, f"synflow{s}", around(0.90 - 0.01 * j), method="synflow", sparsity=s)
    # At 67.2 %: synflow has one ok, one diverged and one failed seed; random only diverged.
    write_run(root, "synflow-ok", acc=0.85, method="synflow", sparsity=0.672, seed=0)
    # A diverged run may still record an accuracy (chance level): it must not be averaged in.
    write_run(
        root, "synflow-div", status="diverged", acc=0.1, method="synflow", sparsity=0.672, seed=1
    )
    write_run(root, "synflow-fail", status="failed", method="synflow", sparsity=0.672, seed=2)
    write_run(root, "random-div", status="diverged", method="random", sparsity=0.672, seed=0)
    for ablation, delta in (("shuffle", 0.0), ("reinit", -0.001), ("invert", -0.05)):
        for s in GRID[:3]:
            accs = around(0.9 + delta)
            seeds(root, f"snip-{ablation}{s}", accs, method="snip", sparsity=s, ablation=ablation)
    seeds(root, "snip-initn", around(0.895), method="snip", sparsity=0.2, ablation="init_normal")
    seeds(root, "grasp-inv", around(0.905), method="grasp", sparsity=0.2, ablation="invert")
    # Figure 7: pruning after t steps at the matching sparsity 48.8 %.
    for method in ("magnitude", "snip"):
        for t in (100, 1000):
            seeds(root, f"{method}-t{t}", around(0.91), method=method, sparsity=0.488, prune_step=t)
    for t in (100, 1000):
        seeds(root, f"ltr-t{t}", around(0.919), method="ltr", sparsity=0.488, prune_step=t)
    # VGG-16: one seed each, no layer or collapse data, no ablations, no prune steps.
    vgg = {"model": "vgg16", "preset": "vgg16_cifar10"}
    write_run(root, "vgg-dense", acc=0.935, method="dense", **vgg)
    write_run(root, "vgg-mat1", acc=0.931, method="magnitude_after_training", sparsity=0.2, **vgg)
    write_run(root, "vgg-mat2", acc=0.929, method="magnitude_after_training", sparsity=0.36, **vgg)
    write_run(root, "vgg-snip", acc=0.93, method="snip", sparsity=0.2, **vgg)
    # Things a reader must skip: a corrupt result, internal folders, a run still in progress.
    (root / "corrupt").mkdir()
    (root / "corrupt" / "result.json").write_text('{"run_id": "corrupt", "spec": {')
    write_run(root / "_internal", "hidden", acc=0.1, method="snip", sparsity=0.2)
    write_run(root, ".trash", acc=0.1, method="snip", sparsity=0.2)
    (root / "in-progress").mkdir()
    (root / "in-progress" / "spec.json").write_text("{}")
    return root


@pytest.fixture(scope="module")
def df(store) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_results(store)


@pytest.fixture(scope="module")
def summary(df) -> pd.DataFrame:
    return summarize(df)


def row(summary: pd.DataFrame, method: str, sparsity: float, model="resnet20", **keys) -> pd.Series:
    keys = {"ablation": "none", "prune_step": 0, **keys}
    mask = (summary["model"] == model) & (summary["method"] == method)
    mask &= summary["sparsity"].sub(sparsity).abs().lt(1e-9)
    for key, value in keys.items():
        mask &= summary[key] == value
    assert mask.sum() == 1, (method, sparsity, keys)
    return summary[mask].iloc[0]


def test_load_results_reads_every_run_and_skips_the_corrupt_one(store):
    with pytest.warns(RuntimeWarning, match="not valid JSON"):
        df = load_results(store)
    assert len(df) == 148  # every run written above
    assert not df["run_id"].isin(["corrupt", "hidden", ".trash", "in-progress"]).any()
    assert [p for p, _ in df.attrs["skipped"]] == [str(store / "corrupt" / "result.json")]
    expected = set(
        "run_id status error model dataset preset method sparsity prune_step ablation seed init "
        "scope rounds test_accuracy best_test_accuracy density collapse_100".split()
    )
    assert expected <= set(df.columns), expected - set(df.columns)
    synflow = df[df["run_id"] == "synflow-ok"].iloc[0]
    assert synflow["collapse_100"] == pytest.approx(1.5 * 0.672 / 5)  # k = 1.5 for synflow
    assert math.isnan(df[df["run_id"] == "dense-s0"].iloc[0]["collapse_100"])


def test_spec_fields_become_columns(tmp_path):
    write_run(
        tmp_path,
        "a",
        acc=0.9,
        method="snip",
        sparsity=0.5,
        drops=[80, 120],
        train={"epochs": 2, "lr": 0.1},
    )
    df = load_results(tmp_path)
    assert df.loc[0, "drops"] == "[80, 120]"
    assert (df.loc[0, "train.epochs"], df.loc[0, "train.lr"]) == (2, 0.1)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"test_accuracy": 91.2}, "not a fraction"),
        ({"status": "running"}, "unknown status"),
        ({"spec": {"model": "resnet20", "dataset": "cifar10", "sparsity": 0.5}}, "lacks method"),
        ({"spec": {"model": "resnet20", "dataset": "cifar10", "method": "snip"}}, "sparsity"),
        ([1, 2], "not a JSON object"),
    ],
)
def test_unusable_results_are_skipped_with_a_reason(tmp_path, change, reason):
    write_run(tmp_path, "good", acc=0.9, method="dense")
    write_run(tmp_path, "bad", acc=0.9, method="snip", sparsity=0.5)
    path = tmp_path / "bad" / "result.json"
    raw = json.loads(path.read_text())
    path.write_text(json.dumps({**raw, **change} if isinstance(change, dict) else change))
    with pytest.warns(RuntimeWarning, match=reason):
        df = load_results(tmp_path)
    assert list(df["run_id"]) == ["good"]
    assert df.attrs["skipped"][0][0] == str(path)
    assert reason in df.attrs["skipped"][0][1]


def test_focus_sparsity_prefers_matching_and_ignores_single_points():
    curves = {"snip": {0.2, 0.5, 0.9}, "grasp": {0.2, 0.5, 0.9}, "ltr": {0.5}}
    assert focus_sparsity(curves, matching=0.5) == (0.5, "highest matching sparsity")
    assert focus_sparsity(curves, matching=None)[0] == 0.9
    assert focus_sparsity({"a": {0.2, 0.5}, "b": {0.2, 0.9}}, None)[0] == 0.2
    assert focus_sparsity({"a": {0.2, 0.5}, "b": {0.9, 0.95}}, None)[0] == 0.95


def test_summarize_means_and_stds_by_hand(summary):
    dense = row(summary, "dense", 0.0)
    assert dense["mean"] == pytest.approx(0.920)
    assert dense["std"] == pytest.approx(0.002)  # sqrt((0 + 0.002² + 0.002²) / 2), ddof=1
    assert (dense["n"], dense["n_diverged"], dense["n_failed"]) == (3, 0, 0)
    snip = row(summary, "snip", 0.59)
    assert snip["mean"] == pytest.approx(0.878)  # (0.877 + 0.879) / 2
    assert snip["std"] == pytest.approx(0.002 / math.sqrt(2))
    assert snip["n"] == 2


def test_summarize_counts_diverged_and_failed_without_averaging_them(summary):
    synflow = row(summary, "synflow", 0.672)
    assert synflow["mean"] == pytest.approx(0.85)
    assert math.isnan(synflow["std"])
    assert (synflow["n"], synflow["n_diverged"], synflow["n_failed"]) == (1, 1, 1)
    random = row(summary, "random", 0.672)
    assert math.isnan(random["mean"]) and (random["n"], random["n_diverged"]) == (0, 1)


def test_summarize_orders_known_methods_first(summary):
    methods = list(dict.fromkeys(summary.loc[summary["model"] == "resnet20", "method"]))
    assert methods == [
        "dense",
        "magnitude_after_training",
        "ltr",
        "random",
        "magnitude",
        "snip",
        "grasp",
        "grasp_magnitude",
        "synflow",
    ]


def test_summarize_warns_when_a_group_mixes_settings(df):
    twin = df[df["run_id"] == "dense-s0"].assign(run_id="twin", init="kaiming_fan_out")
    with pytest.warns(RuntimeWarning, match="init"):
        summarize(pd.concat([df, twin]))


def test_matching_sparsity_on_the_store(summary):
    found = matching_sparsity(summary)
    # 48.8 % drops exactly one dense std (0.002 < tolerance); 59.0 % drops 0.0025.
    assert found[("resnet20", "cifar10")] == pytest.approx(0.488)
    # One dense seed: the tolerance alone decides (drop 0.004 at 20 %, 0.006 at 36 %).
    assert found[("vgg16", "cifar10")] == pytest.approx(0.2)
    # A tighter tolerance binds before the dense std: only 20 % (above dense) matches.
    assert matching_sparsity(summary, tolerance=0.001)[("resnet20", "cifar10")] == 0.2
    assert matching_sparsity(summary, method="snip")[("resnet20", "cifar10")] is None


def _summary(dense: tuple[float, float, int], curve: dict[float, float]) -> pd.DataFrame:
    rows = [("dense", 0.0, *dense)] + [("mat", s, m, 0.001, 3) for s, m in curve.items()]
    frame = pd.DataFrame(rows, columns=["method", "sparsity", "mean", "std", "n"])
    return frame.assign(model="m", dataset="d", ablation="none", prune_step=0)


@pytest.mark.parametrize(
    ("dense", "curve", "expected"),
    [
        # Tolerance 0.005 binds (std 0.01): a drop of exactly 0.005 still matches.
        ((0.92, 0.01, 5), {0.2: 0.915, 0.5: 0.9149}, 0.2),
        # The dense std binds (0.002 < 0.005).
        ((0.92, 0.002, 5), {0.2: 0.918, 0.5: 0.9179}, 0.2),
        # One dense seed: std undefined, tolerance alone.
        ((0.92, math.nan, 1), {0.2: 0.916, 0.5: 0.915, 0.7: 0.91}, 0.5),
        # Matching must hold from the lowest sparsity up: a later recovery does not count.
        ((0.92, 0.01, 5), {0.2: 0.93, 0.5: 0.90, 0.7: 0.92}, 0.2),
        ((0.92, 0.01, 5), {0.2: 0.90, 0.5: 0.92}, None),
    ],
)
def test_matching_sparsity_rule(dense, curve, expected):
    found = matching_sparsity(_summary(dense, curve), method="mat")[("m", "d")]
    assert found == (pytest.approx(expected) if expected is not None else None)


def test_matching_sparsity_without_a_reference_is_none():
    frame = _summary((0.92, 0.01, 5), {0.2: 0.92}).query("method != 'dense'")
    assert matching_sparsity(frame, method="mat") == {("m", "d"): None}


def test_tables_layout_and_cells(summary):
    md = tables(summary)["markdown"]
    header = "| Method | 0.0 | 20.0 | 36.0 | 48.8 | 59.0 | 67.2 |"
    assert header in md
    lines = md.splitlines()
    dense = next(line for line in lines if line.startswith("| Dense |"))
    assert dense.split(" | ")[1] == "92.0 ± 0.2"
    synflow = next(line for line in lines if line.startswith("| SynFlow |"))
    assert synflow.rstrip(" |").endswith("85.0 (n=1, 1 diverged, 1 failed)")
    random = next(line for line in lines if line.startswith("| Random |"))
    assert random.rstrip(" |").endswith("— (1 diverged)")
    snip = next(line for line in lines if line.startswith("| SNIP |"))
    assert "87.8 ± 0.1 (n=2)" in snip
    assert "| LTR (t=100) |" in md  # a benchmark recorded only after some training
    assert "| Method | Ablation | 20.0 | 36.0 | 48.8 | 59.0 |" in md
    assert "| SNIP | Shuffled Layerwise | 90.0 ± 0.1 | 90.0 ± 0.1 | 90.0 ± 0.1 |  |" in md
    assert "| Method | t | 48.8 |" in md
    assert "| Magnitude | 1000 | 91.0 ± 0.1 |" in md


def test_latex_tables_escape_and_use_pm(summary):
    tex = tables(summary)["latex"]
    assert tex.count(r"\begin{tabular}") == tex.count(r"\end{tabular}") == 4
    assert r"92.0 $\pm$ 0.2" in tex
    assert r"--- (1 diverged)" in tex
    assert "Magnitude After Training" in tex and "_" not in tex.replace(r"\_", "")


def test_summary_text(summary):
    text = summary_text(summary)
    assert "ResNet-20 (CIFAR-10)" in text and "VGG-16 (CIFAR-10)" in text
    assert re.search(r"snip/shuffle\s+90\.0±0\.1", text)
    assert "85.0 (n1,1div,1fail)" in text
    assert "snip@t=1000" in text


@pytest.fixture(scope="module")
def report(store, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    (out / "fig_layers_vgg16_cifar10.png").write_bytes(PNG)  # stale, from an earlier report
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return write_report(store, out)


def test_report_writes_every_figure_with_data(report):
    out = report.parent
    kinds = ("accuracy", "ablations", "grasp_variants", "collapse", "prune_step", "layers")
    for kind in kinds:
        path = out / f"fig_{kind}_resnet20_cifar10.png"
        assert path.is_file() and path.stat().st_size > 1000, path
        assert path.read_bytes().startswith(PNG)
    # VGG-16 has no ablations, collapse, layer or prune-step data: only Figure 4.
    assert sorted(p.name for p in out.glob("fig_*vgg16*.png")) == ["fig_accuracy_vgg16_cifar10.png"]
    assert not list(out.glob(".*.tmp"))


def test_report_index_references_every_figure_and_file(report):
    page = report.read_text(encoding="utf-8")
    figures = sorted(p.name for p in report.parent.glob("fig_*.png"))
    assert len(figures) == 7
    for name in figures:
        assert f'src="{name}"' in page
    for name in ("results.csv", "summary.csv", "tables.md", "tables.tex", "layer_density.csv"):
        assert (report.parent / name).stat().st_size > 0
        assert f'href="{name}"' in page
    assert "1 result file(s) skipped" in page and "corrupt" in page
    assert "RuntimeError: failed run" in page
    assert "<td>92.0 ± 0.2</td>" in page
    assert "48.8%" in page  # the matching sparsity
    summary = pd.read_csv(report.parent / "summary.csv")
    assert {"mean", "std", "n", "n_diverged", "n_failed"} <= set(summary.columns)


def test_report_escapes_text(tmp_path):
    write_run(tmp_path / "s", "a", acc=0.9, method="<b>&x", sparsity=0.2)
    write_run(tmp_path / "s", "d", acc=0.9, method="dense")
    page = write_report(tmp_path / "s", tmp_path / "r").read_text(encoding="utf-8")
    assert "<b>&x" not in page and "&lt;b&gt;&amp;x" in page


@pytest.mark.parametrize("case", ["missing", "file", "empty", "only-corrupt"])
def test_store_errors_say_what_is_wrong(tmp_path, case):
    path = tmp_path / "store"
    if case == "file":
        path.write_text("x")
    elif case == "empty":
        (path / "_internal").mkdir(parents=True)
    elif case == "only-corrupt":
        (path / "r").mkdir(parents=True)
        (path / "r" / "result.json").write_text("[")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(StoreError, match=re.escape(str(path))) as error:
            load_results(path)
    assert "\n" not in str(error.value)
    if case in ("empty", "only-corrupt"):
        assert "holds no results" in str(error.value)


def test_report_to_a_file_is_a_store_error(store, tmp_path):
    target = tmp_path / "report.html"
    target.write_text("")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(StoreError, match="is a file"):
            write_report(store, target)


@pytest.mark.slow
def test_analysis_never_imports_torch(store, tmp_path):
    """The analysis modules themselves import no torch and no training code.

    The package's own ``__init__`` is bypassed (an empty stand-in package), so this checks what
    ``earlyprune.analysis`` needs, whatever the top-level package chooses to import.
    """
    package = Path(__file__).resolve().parents[1] / "src" / "earlyprune"
    code = f"""
import sys, types, warnings
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            raise ImportError("torch is blocked in this test")
sys.meta_path.insert(0, Block())
stub = types.ModuleType("earlyprune")
stub.__path__ = [{str(package)!r}]
sys.modules["earlyprune"] = stub
warnings.simplefilter("ignore")
from earlyprune.analysis import write_report
write_report({str(store)!r}, {str(tmp_path)!r})
loaded = sorted(m for m in sys.modules if m.startswith("earlyprune."))
bad = [m for m in loaded if m.split(".")[1] != "analysis"
       and m not in ("earlyprune.core", "earlyprune.core.errors")]
assert not bad, bad
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
    # Mask agreement, the one step that needs torch (to read mask.pt), degrades to one line.
    page = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert (
        page.count("Mask agreement: not computed (reading the stored mask.pt files needs torch)")
        == 1
    )
