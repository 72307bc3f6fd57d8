"""The report's answers to the paper's questions: verdicts, references, compute, mask overlap.

Each store here is built so that the expected numbers follow by hand from its construction.
"""

from __future__ import annotations

import html
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from test_analysis import around, seeds, write_run

from earlyprune.analysis import load_results, load_store, matching_sparsity, summarize, write_report
from earlyprune.analysis import verdicts as V
from earlyprune.analysis.agreement import agreement_html, jaccard, mask_agreement
from earlyprune.analysis.fig_context import Setting
from earlyprune.analysis.figures import DRAW
from earlyprune.analysis.layer_density import CSV_COLUMNS
from earlyprune.analysis.mask_table import mask_table
from earlyprune.analysis.verdict_html import verdict_table
from earlyprune.run.spec import RunSpec


def quiet_report(store: Path, out: Path, **options) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return write_report(store, out, **options).read_text(encoding="utf-8")


def setting(store: Path, model: str = "resnet20", dataset: str = "cifar10", **fields) -> Setting:
    """The figure context of one setting, as ``make_figures`` builds it."""
    data = load_store(store)
    summary = summarize(data.results)
    rows = summary[(summary["model"] == model) & (summary["dataset"] == dataset)]
    matching = matching_sparsity(summary).get((model, dataset))
    return Setting(model, dataset, rows, matching, data, data.results.set_index("run_id"), **fields)


# ---- verdicts ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checked(tmp_path_factory) -> Path:
    """SNIP at 50 %: 91 ± 1 over 3 seeds; random 81 ± 1; SNIP shuffled 90.5 ± 0.5."""
    store = tmp_path_factory.mktemp("verdicts")
    seeds(store, "dense", [0.93, 0.93], method="dense")
    seeds(store, "snip", [0.90, 0.91, 0.92], method="snip", sparsity=0.5)
    seeds(store, "random", [0.80, 0.81, 0.82], method="random", sparsity=0.5)
    seeds(store, "shuf", [0.90, 0.905, 0.91], method="snip", sparsity=0.5, ablation="shuffle")
    # At a later prune step: must not count as the pruning-at-init SNIP.
    seeds(store, "late", [0.10, 0.10], method="snip", sparsity=0.5, prune_step=100)
    seeds(store, "erk", [0.85, 0.86, 0.87], method="erk", sparsity=0.5)
    return store


def test_verdict_cells_by_hand(checked):
    table = verdict_table(load_results(checked))
    # beats random: Δ = 91 − 81 = 10.0 points above, se = √(1²/3 + 1²/3) = 0.8 points → yes.
    assert "<b>yes</b>: 10.0 points above random" in table
    # beats its own allocation with random placement (shuffle): 91 − 90.5 = 0.5 (under one
    # point: "within"), se = √(1/3 + 0.25/3) = 0.6 → no.
    assert "<b>no</b>: accuracy stays within 0.5 points when shuffled" in table
    # beats ERK with random placement: 91 − 86 = 5.0 points above, se 0.8 → yes.
    assert ">Beats ERK (random placement)?</th>" in table
    assert "<b>yes</b>: 5.0 points above ERK" in table
    assert table.count("se 0.8 · 3 v 3 seeds") >= 2 and "se 0.6 · 3 v 3 seeds" in table
    # No magnitude, reinit or invert runs: those checks are not columns.
    for absent in ("beats magnitude", "reinitialization", "inversion"):
        assert absent not in table
    assert "title=" in table and "vs 81.0 ± 1.0 %" in table  # the full line on hover
    # One sign convention, in words: no signed numbers anywhere in the cells.
    assert not re.search(r"[+−-]\d", table)


def test_a_new_check_in_verdicts_shows_up_without_report_edits(checked, monkeypatch):
    erk = V.Check("beats ERK", "none", "erk", "better than ERK", "no better than ERK")
    monkeypatch.setattr(V, "CHECKS", (*V.CHECKS, erk))
    table = verdict_table(load_results(checked))
    # 91 − 86 = 5.0 points above, se 0.8; the heading is the check's name as a question.
    assert ">Beats ERK?</th>" in table and "<b>yes</b>: 5.0 points above erk" in table


def _cells(table: str) -> dict[tuple[str, str], tuple[str, str]]:
    """(method, check) → (class, text) for every check cell of a verdict table."""
    found = {}
    for method, row in re.findall(r'<tr[^>]*data-method="([^"]+)">(.*?)</tr>', table, re.S):
        for klass, check, text in re.findall(
            r'<td class="([^"]+)" data-check="([^"]+)"[^>]*>(.*?)</td>', row, re.S
        ):
            found[(html.unescape(method), html.unescape(check))] = (klass, text)
    return found


@pytest.fixture(scope="module")
def every_kind(tmp_path_factory) -> Path:
    """Random, ERK, SNIP and SNIP with random placement, each with every ablation, at 90 %."""
    store = tmp_path_factory.mktemp("kinds")
    seeds(store, "dense", [0.93, 0.93], method="dense")
    kinds = {
        ("random", None): 0.80,
        ("erk", None): 0.83,
        ("snip", None): 0.86,
        ("magnitude", None): 0.85,
        ("snip", "random"): 0.84,
    }
    for (method, placement), mean in kinds.items():
        extra = {"placement": placement} if placement else {}
        for ablation, drop in (("none", 0), ("shuffle", 0.05), ("reinit", 0.05), ("invert", 0.35)):
            acc = mean - drop  # seeds: acc − 0.01, acc, acc + 0.01
            seeds(
                store,
                f"{method}-{placement}-{ablation}",
                [acc - 0.01, acc, acc + 0.01],
                method=method,
                sparsity=0.9,
                ablation=ablation,
                **extra,
            )
    return store


# (method label, check name) pairs whose question means nothing (verdicts module docstring).
MEANINGLESS = {
    ("random", "beats random"),
    ("random", "beats its own allocation with random placement (shuffle)"),
    ("random", "sensitive to reinitialization"),
    ("random", "sensitive to inversion"),
    ("erk", "beats ERK with random placement"),
    ("erk", "beats its own allocation with random placement (shuffle)"),
    ("erk", "sensitive to reinitialization"),
    ("erk", "sensitive to inversion"),
    ("magnitude", "beats magnitude"),
    ("snip[place=random]", "beats its own allocation with random placement (shuffle)"),
}


def test_no_verdict_where_a_question_means_nothing(every_kind):
    records = [json.loads(p.read_text()) for p in every_kind.glob("*/result.json")]
    methods = ("random", "erk", "snip", "magnitude", "snip[place=random]")
    for method in methods:
        asked = {v.check for v in V.verdicts(records, method, [0.9])}
        expected = {c.name for c in V.CHECKS if (method, c.name) not in MEANINGLESS}
        assert asked == expected, method
    cells = _cells(verdict_table(load_results(every_kind)))
    assert len(cells) == len(methods) * len(V.CHECKS)  # every check has data for some method
    for (method, check), (klass, text) in cells.items():
        if (method, check) in MEANINGLESS:
            assert (klass, text) == ("na", "—"), (method, check)
        else:
            assert klass in ("yes", "no", "unclear") and text.startswith(f"<b>{klass}</b>: ")
    # Everything the data allows is answered: SNIP's ranking matters, SNIP with random
    # placement still loses accuracy when its (SNIP) allocation is inverted.
    klass, text = cells[("snip", "sensitive to inversion")]
    assert klass == "yes" and "accuracy falls 35.0 points when inverted" in text
    assert cells[("snip[place=random]", "sensitive to inversion")][0] == "yes"
    # The console matrix of `earlyprune demo`: n/a where the question means nothing. Random
    # (80 %) lies 5 points below magnitude (85 %) and 3 below ERK (83 %).
    matrix = V.verdict_matrix(records, methods, 0.9).splitlines()
    assert matrix[2].split() == [
        "random",
        "n/a",
        "no:",
        "5.0",
        "below",
        "no:",
        "3.0",
        "below",
        "n/a",
        "n/a",
        "n/a",
    ]


@pytest.mark.parametrize(
    ("method", "allocation", "placement"),
    [
        ("random", "random", "random"),
        ("erk", "erk", "random"),
        ("snip", "snip", "snip"),
        ("snip[place=random]", "snip", "random"),
        ("random[alloc=erk]", "erk", "random"),
        ("erk[place=magnitude]", "erk", "magnitude"),
        ("someone_new", "someone_new", "someone_new"),
    ],
)
def test_recipe_reads_allocation_and_placement_from_the_label(method, allocation, placement):
    assert V.recipe(method) == (allocation, placement)


def test_erk_with_random_placement_under_any_name_is_erk():
    erk = V.check_named("beats ERK with random placement")
    assert V.not_applicable(erk, "random[alloc=erk]") == "random[alloc=erk] is ERK itself"
    assert V.not_applicable(erk, "snip[alloc=erk]") is None  # SNIP places within ERK's counts
    invert = V.check_named("sensitive to inversion")
    assert V.not_applicable(invert, "snip[alloc=uniform,place=random]")  # data-free and random
    assert V.not_applicable(invert, "snip[alloc=erk]") is None


def test_random_sparse_baselines_match_the_registries():
    """``verdicts`` never imports torch, so it lists the baselines; they must match the registry."""
    import earlyprune  # noqa: F401  (registers every method and allocation)
    from earlyprune.methods.allocation.base import ALLOCATIONS
    from earlyprune.methods.base import METHODS

    placed_at_random = {
        name
        for name in METHODS
        if METHODS.get(name).placement == "random" and METHODS.get(name).allocation in ALLOCATIONS
    }
    assert set(V.RANDOM_SPARSE) == {"random", *placed_at_random}
    assert set(ALLOCATIONS.names()) <= set(V.RANDOM_SPARSE)


def test_every_check_says_its_direction_in_words():
    for check in V.CHECKS:
        up, down, small = (check.words(e) for e in (0.05, -0.05, 0.003))
        for text in (up, down, small):
            assert not re.search(r"[+−-]\s?\d", text), text
        if check.reference is not None:
            assert up.startswith("5.0 points above ") and down.startswith("5.0 points below ")
            assert small.startswith("within 0.3 points of ")
        else:
            assert up.startswith("accuracy falls 5.0 points when ")
            assert down.startswith("accuracy rises 5.0 points when ")
            assert small.startswith("accuracy stays within 0.3 points when ")


# ---- references never mix (issue 12, item 10) ---------------------------------------------
def test_dense_reference_matches_the_runs_it_is_compared_with(tmp_path):
    store = tmp_path / "s"
    seeds(store, "dense", [0.918, 0.92, 0.922], method="dense")
    # The dense run of the init_normal ablation, in the pipeline's own form.
    normal = RunSpec(method="snip", sparsity=0.5, ablation="init_normal").dense_spec()
    fields = {"init": normal.init}
    assert fields == {"init": "normal"}
    seeds(store, "dense-n01", [0.10, 0.12, 0.11], method="dense", **fields)
    seeds(store, "mat", [0.919, 0.919, 0.919], method="magnitude_after_training", sparsity=0.5)
    seeds(store, "snip-n", [0.3, 0.3, 0.3], method="snip", sparsity=0.5, ablation="init_normal")
    seeds(store, "snip", [0.9, 0.9, 0.9], method="snip", sparsity=0.5)
    summary = summarize(load_results(store))
    dense = summary[summary["method"] == "dense"].set_index("ablation")["mean"]
    assert dense["none"] == pytest.approx(0.92) and dense["init_normal"] == pytest.approx(0.11)
    ctx = setting(store)
    assert ctx.dense["mean"] == pytest.approx(0.92)
    assert ctx.own_dense("init_normal")["mean"] == pytest.approx(0.11)
    assert ctx.matching == 0.5  # 0.919 is within one std of 0.92 (not of the mixed 0.515)
    fig, _ = DRAW["ablations"](ctx)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["SNIP"]  # the dense runs are no panel
    lines = {ln.get_label(): ln.get_ydata()[0] for ln in panels[0].lines}
    assert lines["Dense (unpruned)"] == pytest.approx(92.0)
    assert lines["Dense, Init N(0, 1)"] == pytest.approx(11.0)


# ---- compute, effective density, collapse --------------------------------------------------
def _with(store: Path, run_id: str, **extra) -> None:
    path = store / run_id / "result.json"
    result = json.loads(path.read_text())
    result.update(extra)
    path.write_text(json.dumps(result))


@pytest.fixture(scope="module")
def costly(tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("flops")
    seeds(store, "dense", [0.92, 0.92], method="dense")
    for s, flops in ((0.5, (600, 400)), (0.8, (300, 100))):
        seeds(store, f"snip{s}", [0.9, 0.91], method="snip", sparsity=s)
        for seed, pruned in enumerate(flops):
            _with(
                store,
                f"snip{s}-s{seed}",
                flops={"dense": 1000, "pruned": pruned},
                effective_density=(1 - s) / (seed + 1),
            )
    return store


def test_flops_and_effective_density_columns(costly, tmp_path):
    df = load_results(costly)
    assert {"flops", "flops_dense", "effective_density"} <= set(df.columns)
    row = summarize(df).set_index(["method", "sparsity"]).loc[("snip", 0.8)]
    assert row["flops_fraction"] == pytest.approx((0.3 + 0.1) / 2)
    assert row["effective_density"] == pytest.approx((0.2 + 0.1) / 2)
    ctx = setting(costly)
    table = mask_table(ctx.rows, has_conv=True)
    assert "<td>20.0</td><td>15.0</td><td>20.0</td>" in table  # density, effective, FLOPs at 80 %
    fig, caption = DRAW["flops"](ctx)
    assert [round(x, 6) for x in fig.axes[0].lines[0].get_xdata()] == [0.2, 0.5]
    assert "multiply-adds" in caption


def test_collapse_is_na_without_conv_channels_and_no_all_zero_figure(tmp_path):
    store = tmp_path / "s"
    seeds(store, "dense", [0.98, 0.98], method="dense", model="lenet_300_100", dataset="mnist")
    seeds(
        store,
        "snip",
        [0.97, 0.97],
        method="snip",
        sparsity=0.9,
        model="lenet_300_100",
        dataset="mnist",
    )
    for seed in (0, 1):  # what the pipeline records for a network without conv layers
        _with(
            store,
            f"snip-s{seed}",
            neuron_collapse={"thresholds": [1.0], "overall": [0.0], "per_layer": {}},
            layer_density={"1.weight": 0.1},
            layer_numel={"1.weight": 784},
        )
    assert load_results(store)["collapse_100"].isna().all()
    ctx = setting(store, "lenet_300_100", "mnist")
    assert DRAW["collapse"](ctx) is None
    assert "<td>n/a</td>" in mask_table(ctx.rows, has_conv=False)
    # A conv network where no channel collapsed anywhere: no figure of zeros either.
    conv = tmp_path / "conv"
    seeds(conv, "snip", [0.9, 0.9], method="snip", sparsity=0.2)
    for seed in (0, 1):
        _with(
            conv,
            f"snip-s{seed}",
            neuron_collapse={
                "thresholds": [0.5, 1.0],
                "overall": [0.0, 0.0],
                "per_layer": {"conv1.weight": [0.0, 0.0]},
            },
        )
    assert DRAW["collapse"](setting(conv)) is None


# ---- figures a paper can use -----------------------------------------------------------------
@pytest.fixture(scope="module")
def paper(tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("paper")
    seeds(store, "dense", [0.92, 0.92], method="dense")
    for s in (0.2, 0.36, 0.488):  # magnitude after training matches everywhere: the grid's edge
        seeds(store, f"mat{s}", [0.921, 0.921], method="magnitude_after_training", sparsity=s)
        seeds(store, f"snip{s}", [0.9, 0.91], method="snip", sparsity=s)
        seeds(store, f"inv{s}", [0.5, 0.6], method="snip", sparsity=s, ablation="invert")
        seeds(store, f"mag{s}", [0.88, 0.885], method="magnitude", sparsity=s)
        seeds(store, f"magr{s}", [0.87, 0.875], method="magnitude", sparsity=s, ablation="reinit")
    for t in (20, 40, 100):
        seeds(store, f"snip-t{t}", [0.9, 0.9], method="snip", sparsity=0.488, prune_step=t)
        seeds(store, f"mag-t{t}", [0.9, 0.9], method="magnitude", sparsity=0.488, prune_step=t)
    generator = torch.Generator().manual_seed(0)
    for rid in ("snip0.488-s0", "snip0.488-s1", "mag0.488-s0", "mag0.488-s1"):
        mask = {"fc.weight": torch.rand(64, generator=generator) < 0.512}
        torch.save(mask, store / rid / "mask.pt")
    return store


@pytest.fixture(scope="module")
def paper_report(paper, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("paper_report")
    quiet_report(paper, out)
    return out


def test_matching_at_the_edge_of_the_grid_reads_at_least(paper_report):
    page = (paper_report / "index.html").read_text(encoding="utf-8")
    assert "<td>≥ 48.8%</td>" in page
    assert "Matching sparsity ≥ 48.8%" in page or "matching sparsity ≥ 48.8%" in page


def test_every_figure_has_a_pdf_and_the_page_shows_verdicts(paper_report):
    page = (paper_report / "index.html").read_text(encoding="utf-8")
    pngs = sorted(paper_report.glob("fig_*.png"))
    kinds = {p.name.split("_resnet20")[0].removeprefix("fig_") for p in pngs}
    assert kinds == {"accuracy", "ablations", "collapse", "prune_step", "layers", "agreement"}
    for png in pngs:
        pdf = png.with_suffix(".pdf")
        assert pdf.read_bytes().startswith(b"%PDF"), pdf
        assert f'href="{pdf.name}"' in page
    assert '<table class="verdicts">' in page and "2·se" in page
    assert "fewer than two ok seeds" in page
    assert "Mask agreement at 48.8% sparsity" in page
    assert (paper_report / "agreement.csv").is_file()


def test_ablation_panels_share_a_y_range_unless_freed(paper):
    fig, caption = DRAW["ablations"](setting(paper))
    limits = {tuple(np.round(ax.get_ylim(), 6)) for ax in fig.axes if ax.get_visible()}
    assert len(limits) == 1
    assert "one y-range" in caption and "Inverted" in caption and "Reinitialized" in caption
    assert "Shuffled" not in caption  # only the ablations that were run
    fig, _ = DRAW["ablations"](setting(paper, free_y=True))
    limits = {tuple(np.round(ax.get_ylim(), 6)) for ax in fig.axes if ax.get_visible()}
    assert len(limits) == 2  # inverted SNIP falls far below, reinitialized magnitude does not


def test_prune_step_axis_labels_its_steps(paper):
    fig, _ = DRAW["prune_step"](setting(paper))
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert [x for x in labels if x] == ["0", "20", "40", "100"]


def test_layer_axis_shows_module_paths_with_weight_counts(tmp_path):
    store = tmp_path / "s"
    write_run(store, "snip", acc=0.9, method="snip", sparsity=0.5)
    fig, _ = DRAW["layers"](setting(store))
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["conv1 (432)", "layer1.0.conv1 (2,304)", "fc (640)"]


# ---- mask agreement ------------------------------------------------------------------------
def test_jaccard_and_agreement_by_hand(tmp_path):
    store = tmp_path / "s"
    masks = {  # (method, seed): kept weights of a 4-weight network, one layer
        ("snip", 0): [1, 1, 0, 0],
        ("snip", 1): [1, 1, 1, 0],
        ("magnitude", 0): [1, 0, 1, 0],
        ("magnitude", 1): [0, 0, 1, 1],
    }
    for (method, seed), kept in masks.items():
        rid = f"{method}-{seed}"
        write_run(store, rid, acc=0.9, method=method, sparsity=0.5, seed=seed)
        torch.save({"fc.weight": torch.tensor(kept, dtype=torch.bool)}, store / rid / "mask.pt")
    write_run(store, "grasp-0", acc=0.9, method="grasp", sparsity=0.5)
    (store / "grasp-0" / "mask.pt").write_bytes(b"not a torch file")  # damaged: left out
    assert jaccard(np.array([1, 1, 0], bool), np.array([1, 0, 1], bool)) == pytest.approx(1 / 3)
    found = mask_agreement(store, load_results(store))
    assert list(found.jaccard.index) == ["magnitude", "snip"]
    j = found.jaccard
    assert j.loc["snip", "snip"] == pytest.approx(2 / 3)  # seeds 0 vs 1
    assert j.loc["magnitude", "magnitude"] == pytest.approx(1 / 3)
    # Same seeds: seed 0 {0,1} vs {0,2} = 1/3; seed 1 {0,1,2} vs {2,3} = 1/4.
    assert j.loc["snip", "magnitude"] == j.loc["magnitude", "snip"] == pytest.approx(7 / 24)
    assert found.pairs.loc["snip", "magnitude"] == 2
    assert found.chance == pytest.approx(0.5 / 1.5)
    assert "0.292 (2)" in agreement_html(found)
    assert not np.isnan(found.jaccard.to_numpy(float)).any()


def test_check_method_layer_table_uses_module_paths_and_na():
    run = {
        "spec": {"method": "snip", "ablation": "none", "sparsity": 0.9},
        "status": "ok",
        "layer_density": {"fc1.weight": 0.1, "fc2.weight": 0.2},
        "layer_numel": {"fc1.weight": 235200, "fc2.weight": 30000},
        "neuron_collapse": {"thresholds": [1.0], "overall": [0.0], "per_layer": {}},
    }
    lines = V.layer_table([run], ["snip"], 0.9).splitlines()
    assert lines[1].split() == ["method", "fc1", "fc2", "collapse"]
    assert lines[2].split() == ["(weights)", "235200", "30000"]
    assert lines[3].split() == ["snip", "10.0", "20.0", "n/a"]


def test_random_sparse_references_are_dashed_and_unknown_methods_just_work(tmp_path):
    store = tmp_path / "s"
    seeds(store, "dense", [0.92, 0.92], method="dense")
    for method in ("erk", "rigl", "someone_new", "snip"):
        for s in (0.5, 0.8):
            seeds(store, f"{method}{s}", [0.9, 0.91], method=method, sparsity=s)
    fig, caption = DRAW["accuracy"](setting(store))
    styles = {ln.get_label(): (ln.get_linestyle(), ln.get_marker()) for ln in fig.axes[0].lines}
    assert styles["ERK"] == ("--", "") and styles["RigL"][0] == "-"
    assert styles["someone_new"][0] == "-" and "SNIP" in styles
    assert "dashed: random-sparse references (ERK)" in caption
    assert "matching" not in caption  # no magnitude after training was run
    # Only ERK is there to compare with (no random, magnitude or ablation runs): one question.
    table = verdict_table(load_results(store))
    assert ">Beats ERK (random placement)?</th>" in table and "Beats random?" not in table
    seeds(store, "random0.5", [0.5, 0.52], method="random", sparsity=0.5)
    table = verdict_table(load_results(store))
    assert "someone_new" in table and ">Beats random?</th>" in table


def test_a_store_mixing_numerics_versions_is_flagged(tmp_path):
    store = tmp_path / "s"
    seeds(store, "snip", [0.9, 0.91], method="snip", sparsity=0.5)
    _with(store, "snip-s1", numerics_version=2)  # snip-s0 predates versions: version 1
    df = load_results(store)
    assert sorted(df["numerics_version"]) == [1, 2]
    page = quiet_report(store, tmp_path / "r")
    assert "mixes results of several numerics versions (1 of version 1, 1 of version 2)" in page


# ---- per-layer densities as numbers (issue 20) ------------------------------------------------
def test_layer_densities_as_numbers_in_a_csv_and_the_page(tmp_path):
    store = tmp_path / "s"
    seeds(store, "dense", [0.92, 0.92], method="dense")
    for s in (0.5, 0.8):
        seeds(store, f"snip{s}", [0.9, 0.91], method="snip", sparsity=s)
    # Two SNIP seeds at 50 % with different densities; a diverged random run still has a mask.
    _with(
        store,
        "snip0.5-s1",
        layer_density={"conv1.weight": 0.8, "layer1.0.conv1.weight": 0.4, "fc.weight": 0.35},
        layer_effective_density={
            "conv1.weight": 0.7,
            "layer1.0.conv1.weight": 0.3,
            "fc.weight": 0.3,
        },
    )
    write_run(store, "random0.5", acc=0.8, method="random", sparsity=0.5)
    write_run(store, "random0.5-div", status="diverged", method="random", sparsity=0.5, seed=1)
    write_run(store, "random0.8", acc=0.7, method="random", sparsity=0.8)
    seeds(store, "snip-inv", [0.5, 0.52], method="snip", sparsity=0.5, ablation="invert")
    page = quiet_report(store, tmp_path / "r")
    csv = pd.read_csv(tmp_path / "r" / "layer_density.csv")
    assert list(csv.columns) == list(CSV_COLUMNS)
    snip = csv[(csv["method"] == "snip") & (csv["ablation"] == "none") & (csv["sparsity"] == 0.5)]
    # write_run's profile for "snip" at 50 %: conv1 min(1, 2·0.5) = 1.0, layer1.0.conv1 0.5,
    # fc 0.5 / 2 = 0.25 (seed 0); seed 1 as set above.
    assert list(snip["layer"]) == ["conv1.weight", "layer1.0.conv1.weight", "fc.weight"]
    assert list(snip["module"]) == ["conv1", "layer1.0.conv1", "fc"]
    assert list(snip["numel"]) == [432, 2304, 640] and set(snip["runs"]) == {2}
    assert list(snip["density"]) == pytest.approx([0.9, 0.45, 0.3])
    # Sample std of two values a, b: |a − b| / √2.
    assert list(snip["density_std"]) == pytest.approx([0.2 / 2**0.5, 0.1 / 2**0.5, 0.1 / 2**0.5])
    assert list(snip["effective_density"]) == pytest.approx([0.7, 0.3, 0.3])  # seed 1 only
    random = csv[(csv["method"] == "random") & (csv["sparsity"] == 0.5)]
    assert set(random["runs"]) == {2}  # the diverged run's mask counts
    assert list(random["density"]) == pytest.approx([0.625, 0.5, 0.4])  # k = 1.25
    assert len(csv[csv["ablation"] == "invert"]) == 3
    assert len(csv) == 3 * 5  # snip × 2 sparsities, random × 2, inverted snip × 1
    # The page: a table at the figure's sparsity (the highest common one, 80 %), rows labelled
    # by module paths, one column per method; and a link to the CSV.
    assert 'href="layer_density.csv"' in page
    table = page[page.index('<table class="layers">') :]
    table = table[: table.index("</table>")]
    assert "Per-layer density at sparsity 80.0%" in table
    rows = re.findall(r"<tr><th[^>]*><code>([^<]+)</code></th>(.*?)</tr>", table)
    assert [name for name, _ in rows] == ["conv1", "layer1.0.conv1", "fc"]
    # At 80 %: random 0.25, 0.2, 0.16; snip min(1, 0.4) = 0.4, 0.2, 0.1 (columns: weights, then
    # the methods in the report's order, random before snip).
    assert re.findall(r"<td>([^<]+)</td>", rows[0][1]) == ["432", "25.0", "40.0"]
    assert re.findall(r"<td>([^<]+)</td>", rows[2][1]) == ["640", "16.0", "10.0"]


def test_no_layer_csv_without_layer_data(tmp_path):
    store = tmp_path / "s"
    vgg = {"model": "vgg16", "preset": "vgg16_cifar10"}  # write_run records no layers for it
    write_run(store, "snip", acc=0.9, method="snip", sparsity=0.5, **vgg)
    out = tmp_path / "r"
    out.mkdir()
    (out / "layer_density.csv").write_text("stale")
    page = quiet_report(store, out)
    assert not (out / "layer_density.csv").exists() and "layer_density.csv" not in page


def test_reports_name_a_user_method_as_the_user_wrote_it(tmp_path):
    """`my_scores.py:score` in tables and verdicts, not the hashed `my_scores:score@…`; two
    versions of one file (two hashes) in one store stay apart under their hashed names."""
    store = tmp_path / "runs"
    v1, v2 = "my_scores:score@1a2b3c4d", "my_scores:score@99999999"
    file = str(tmp_path / "lab" / "my_scores.py") + ":score"
    seeds(store, "u1", around(0.80), method=v1, method_file=file, sparsity=0.9)
    seeds(store, "r", around(0.70), method="random", sparsity=0.9)
    rows = load_results(store)
    assert set(rows["method"]) == {"my_scores.py:score", "random"}
    html_table = verdict_table(rows)
    assert "my_scores.py:score" in html_table and "@1a2b3c4d" not in html_table
    found = V.verdicts([json.loads(p.read_text()) for p in store.glob("*/result.json")], v1, [0.9])
    assert next(v for v in found if v.check == "beats random").answer == "yes"
    seeds(store, "u2", around(0.60), method=v2, method_file=file, sparsity=0.9)
    rows = load_results(store)
    assert set(rows["method"]) == {v1, v2, "random"}  # different code: never pooled
    assert rows.groupby("method")["test_accuracy"].mean()[v1] == pytest.approx(0.80)
