"""`earlyprune demo` and `earlyprune check-method`, on a grid small enough for a test.

The runs are real (the demo network on the embedded data) but 5 steps long, at one sparsity: the
demo grid is 6 methods × 4 ablations × 1 seed + 1 dense run. A user method's check (two seeds, so
that verdicts have a standard deviation) reuses that store: only its own 8 runs and the
references' second seed are trained.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from earlyprune import cli
from earlyprune.analysis.verdicts import CHECKS, Stat, Verdict, decide, stat, verdicts
from earlyprune.apps import check_method as check
from earlyprune.apps import demo
from earlyprune.methods.scoring import METHODS
from earlyprune.run.spec import PRESETS

# The demo preset shrunk to 5 steps on 320 images, evaluated on 200: runs take a fraction of a
# second. Only this process knows the preset, so every run here goes in-process (workers=1).
TINY = demo.Grid(sparsities=(0.892626,), seeds=(0,), preset="test_demo_tiny")
TINY2 = dataclasses.replace(TINY, seeds=(0, 1))

USER_FILE = """
import torch
import earlyprune as ep


def my_score(model, batch):
    # |w| with a small bonus for the output layer: a magnitude variant, higher = keep.
    names = list(ep.prunable(model))
    return {n: w.detach().abs() * (2.0 if n == names[-1] else 1.0)
            for n, w in ep.prunable(model).items()}


def one_arg(model):
    return {}


def full_form(model, batch, mask, seed):
    # The @register_method signature: magnitude of the surviving weights.
    return {n: w.detach().abs() * mask[n] for n, w in ep.prunable(model).items()}


def three_args(model, batch, mask):
    return {}


def wrong_shape(model, batch):
    return {n: torch.ones(3) for n in ep.prunable(model)}


def not_tensors(model, batch):
    return {n: w.tolist() for n, w in ep.prunable(model).items()}


def extra_key(model, batch):
    scores = {n: w.detach().abs() for n, w in ep.prunable(model).items()}
    scores["conv1.bias"] = torch.zeros(16)
    return scores


SEEN = {}


def flaky(model, batch):
    # Scores the batch of seed 0 (the one the probe uses too) and fails on any other.
    key = float(batch[0].sum())
    if SEEN.setdefault("first", key) != key:
        raise RuntimeError("flaky")
    return {n: w.detach().abs() for n, w in ep.prunable(model).items()}


def changes_weights(model, batch):
    for w in ep.prunable(model).values():
        w.data.zero_()
    return {n: w.detach().abs() for n, w in ep.prunable(model).items()}
"""


def results_in(store: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(store.glob("*/result.json"))]


def mtimes(store: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in store.glob("*/result.json")}


@pytest.fixture(scope="module", autouse=True)
def tiny_preset() -> Iterator[None]:
    tiny = dataclasses.replace(
        PRESETS.get("demo"),
        name=TINY.preset,
        epochs=1,
        batch_size=64,
        milestones=(),
        train_subset=320,
        test_subset=200,
    )
    PRESETS.add(tiny.name, tiny)
    yield
    PRESETS.remove(tiny.name)


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, demo.DemoResult]:
    root = tmp_path_factory.mktemp("demo")
    result = demo.run_demo(root / "runs", root / "report", grid=TINY, workers=1, progress=False)
    return root / "runs", result


@pytest.fixture(scope="module")
def user_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("user") / "my_method.py"
    path.write_text(USER_FILE, encoding="utf-8")
    return path


# ---- the demo -----------------------------------------------------------------------------
@pytest.mark.slow
def test_demo_table_shows_every_method_and_ablation_with_all_seeds(demo_store):
    store, result = demo_store
    assert not result.problems and result.index.is_file()
    assert len(results_in(store)) == len(demo.demo_specs(TINY)) == 6 * 4 + 1 + 1  # + ERK
    # A mask that cuts every path (inverted SynFlow here) is an outcome: "1 disc", not a failure.
    rows = {ln.split()[0]: ln for ln in result.text.splitlines() if ln.endswith((" ok", " disc"))}
    for method in demo.DEMO_METHODS:
        for ablation in demo.DEMO_ABLATIONS:
            name = method if ablation == "none" else f"{method}/{ablation}"
            assert name in rows, name
            assert rows[name].endswith(("1 ok", "1 disc"))  # every seed, no failures
    assert "the paper's checks at 89.3 % sparsity" in result.text


@pytest.mark.slow
def test_demo_cli_reuses_the_store(demo_store, monkeypatch, capsys):
    store, _ = demo_store
    before = mtimes(store)
    monkeypatch.setattr(demo, "QUICK", TINY)
    out = store.parent / "report_cli"
    argv = ["demo", "--quick", "--store", str(store), "--out", str(out), "--workers", "1"]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "snip/shuffle" in text and (out / "index.html").is_file()
    assert mtimes(store) == before  # nothing retrained


# ---- check-method -------------------------------------------------------------------------
@pytest.mark.slow
def test_check_method_on_a_user_file_gives_every_verdict_from_the_store(demo_store, user_file):
    store, _ = demo_store
    n_before = len(results_in(store))
    out = store.parent / "report_user"
    report = check.check_method(
        f"{user_file}:my_score", store, out, grid=TINY2, workers=1, progress=False
    )
    assert report.name.startswith("my_method:my_score@")
    assert report.name not in METHODS  # registered for the check only
    # Trained: the method's 4 ablations × 2 seeds, the 6 references' and dense's second seed.
    assert len(results_in(store)) == n_before + 4 * 2 + 6 + 1
    by_key: dict[tuple[str, str], list[float]] = {}
    for r in results_in(store):
        s = r["spec"]
        assert r["status"] in ("ok", "disconnected")
        by_key.setdefault((s["method"], s["ablation"]), []).append(r["test_accuracy"])
    lines = report.text.splitlines()
    for c in CHECKS:
        found = [ln for ln in lines if ln.startswith(f"{c.name} at 89.3 %: ")]
        assert len(found) == 1, c.name
        assert found[0].split(": ")[1].split(",")[0].split(" ")[0] in ("yes", "no", "unclear")
        other = (c.reference, "none") if c.reference else (report.name, c.ablation)
        for accs in (by_key[(report.name, "none")], by_key[other]):
            expected = f"{100 * statistics.fmean(accs):.1f} ± {100 * statistics.stdev(accs):.1f}"
            assert expected in found[0]
    # The verdicts equal those recomputed from the store, and the JSON file holds them.
    again = verdicts(results_in(store), report.name, TINY2.sparsities)
    assert [v.to_dict() for v in again] == [v.to_dict() for v in report.verdicts]
    saved = json.loads(report.summary_file.with_suffix(".json").read_text())
    assert [v["line"] for v in saved] == [v.line() for v in report.verdicts]
    # The layer table names the method as the user wrote it, not by its hashed name.
    shown = f"{user_file}:my_score"
    for method in (shown, "random", "magnitude", "erk", "snip", "grasp", "synflow"):
        assert any(ln.startswith(method + " ") for ln in lines if "%" not in ln), method
    assert all(v["method"] == shown for v in saved)
    assert (out / "index.html").is_file() and report.summary_file.read_text() == report.text


@pytest.mark.slow
def test_check_method_takes_the_register_method_signature_too(demo_store, user_file):
    store, _ = demo_store
    report = check.check_method(
        f"{user_file}:full_form",
        store,
        store.parent / "report_full",
        grid=TINY,
        workers=1,
        progress=False,
    )
    assert report.name.startswith("my_method:full_form@") and not report.problems
    # |w| of the survivors is magnitude pruning: the unmodified runs keep magnitude's layers.
    by = {
        (r["spec"]["method"], r["spec"]["ablation"]): r
        for r in results_in(store)
        if r["spec"]["seed"] == 0
    }
    assert by[(report.name, "none")]["layer_density"] == by[("magnitude", "none")]["layer_density"]
    assert len([v for v in report.verdicts]) == len(CHECKS)


@pytest.mark.slow
def test_check_method_on_builtin_snip_matches_the_demo_without_retraining(demo_store):
    store, result = demo_store
    before = mtimes(store)
    report = check.check_method(
        "snip", store, store.parent / "report_snip", grid=TINY, workers=1, progress=False
    )
    assert mtimes(store) == before
    # The demo's SNIP rows of the results table, cell for cell (column widths may differ).
    demo_rows = [
        ln.split()
        for ln in result.text.splitlines()
        if ln.startswith("snip") and ln.endswith(" ok")
    ]
    assert len(demo_rows) == 4
    assert all(row in [ln.split() for ln in report.text.splitlines()] for row in demo_rows)
    snip = [
        r["test_accuracy"]
        for r in results_in(store)
        if r["spec"]["method"] == "snip"
        and r["spec"]["ablation"] == "none"
        and r["spec"]["seed"] in TINY.seeds
    ]
    assert report.verdicts[0].subject == stat(snip) and stat(snip).n == len(TINY.seeds)


@pytest.mark.slow
def test_runs_that_fail_are_reported_and_their_verdicts_unclear(demo_store, user_file):
    store, _ = demo_store
    report = check.check_method(
        f"{user_file}:flaky",
        store,
        store.parent / "report_flaky",
        grid=TINY2,
        workers=1,
        progress=False,
    )
    assert len(report.problems) == 4  # seed 1 of each ablation
    assert all("failed RuntimeError: flaky" in line for line in report.problems)
    assert {v.answer for v in report.verdicts} == {"unclear"}
    assert "needs at least two ok seeds on each side" in report.text


def test_dotted_module_targets_resolve_like_files(tmp_path, monkeypatch, user_file):
    package = tmp_path / "ep_test_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "scores.py").write_text(user_file.read_text())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    try:
        target = check.resolve("ep_test_pkg.scores:my_score")
    finally:
        for name in [m for m in sys.modules if m.startswith("ep_test_pkg")]:
            del sys.modules[name]
    assert target.name.startswith("ep_test_pkg.scores:my_score@")
    # Named by the source's hash: the same code in a file gets the same name, so the same runs.
    assert target.name.split("@")[1] == check.resolve(f"{user_file}:my_score").name.split("@")[1]


@pytest.mark.parametrize(
    ("func", "message"),
    [
        ("nope.py:my_score", "no such file"),
        ("USER:missing", "has no function 'missing'"),
        ("USER:one_arg", "must take the positional arguments (model, batch, mask, seed)"),
        ("USER:three_args", "must take the positional arguments (model, batch, mask, seed)"),
        ("USER:wrong_shape", "has shape (3,), expected (16, 1, 5, 5)"),
        ("USER:not_tensors", "expected a torch.Tensor"),
        ("USER:extra_key", "which are not prunable"),
        ("USER:changes_weights", "changed the model's weights"),
        ("no_such_module_xyz:f", "cannot import module"),
        ("not-a-method", "expected FILE.py:FUNCTION"),
    ],
)
def test_bad_targets_give_one_line_and_exit_2(func, message, user_file, tmp_path, capsys):
    store = tmp_path / "runs"
    target = func.replace("USER", str(user_file))
    code = cli.main(["check-method", target, "--store", str(store), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("earlyprune: error: ") and message in err
    assert not store.exists()  # nothing written


# ---- the verdict rule ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("effect", "se", "answer"),
    [
        (0.05, 0.01, "yes"),  # 5 points, 2.5 se above zero
        (0.05, 0.03, "unclear"),  # large but within 2 se
        (0.005, 0.003, "no"),  # half a point, measured precisely
        (-0.03, 0.015, "no"),  # clearly worse
        (0.005, 0.02, "unclear"),  # small but too noisy to say
        (0.009, 0.001, "no"),  # real but below the one-point threshold
        (0.02, math.nan, "unclear"),  # one seed: no error estimate
    ],
)
def test_decide(effect, se, answer):
    assert decide(effect, se) == answer


def test_verdict_line_format():
    v = Verdict(
        "beats random",
        0.9,
        "yes",
        0.041,
        0.006,
        Stat(0.8, 0.004, 3),
        Stat(0.759, 0.005, 3),
        "its choices are better",
    )
    assert v.line() == (
        "beats random at 90.0 %: yes, 4.1 points above random (80.0 ± 0.4 vs 75.9 ± 0.5 %, "
        "se 0.6, 3 seeds) — its choices are better"
    )
    inverted = Verdict(
        "sensitive to inversion",
        0.9,
        "yes",
        0.2,
        0.01,
        Stat(0.8, 0.004, 3),
        Stat(0.6, 0.004, 3),
        "its ranking matters",
    )
    assert "yes, accuracy falls 20.0 points when inverted (80.0 ± 0.4 → 60.0 ± 0.4 %" in (
        inverted.line()
    )
    shuffle = "beats its own allocation with random placement (shuffle)"
    shuffled = Verdict(
        shuffle,
        0.9,
        "no",
        -0.002,
        0.004,
        Stat(0.8, 0.004, 3),
        Stat(0.802, 0.004, 3),
        "no information",
    )
    assert "no, accuracy stays within 0.2 points when shuffled (80.0 ± 0.4 → 80.2 ± 0.4 %" in (
        shuffled.line()
    )


@pytest.mark.slow
def test_a_user_method_runs_in_pool_workers(tmp_path):
    """Worker processes start with the built-in registry; `methods=` teaches them the user's."""
    from earlyprune.run.spec import RunSpec
    from earlyprune.run.store import RunStore
    from earlyprune.sweeps.grid import run_specs

    source = tmp_path / "mine.py"
    source.write_text(
        "import earlyprune as ep\n\n"
        "def my_score(model, batch):\n"
        "    return {n: w.detach().abs() for n, w in ep.prunable(model).items()}\n"
    )
    target = f"{source}:my_score"
    resolved = check.resolve(target)
    with check.registered(resolved):
        mine = [RunSpec(method=resolved.name, sparsity=0.9, epochs=0.25, seed=s) for s in (0, 1)]
    ref = [RunSpec(method="magnitude", sparsity=0.9, epochs=0.25, seed=s) for s in (0, 1)]
    results = run_specs(
        [*mine, *ref], RunStore(tmp_path / "runs"), workers=2, progress=False, methods=(target,)
    )
    assert [r["status"] for r in results] == ["ok"] * 4, [r.get("error") for r in results]
    # |w| is magnitude pruning: same masks, same training, same accuracy (same thread count).
    for own, magnitude in zip(results[:2], results[2:], strict=True):
        assert own["layer_density"] == magnitude["layer_density"]
        assert own["test_accuracy"] == magnitude["test_accuracy"]


def test_beats_checks_say_above_or_below_and_ablation_checks_falls_or_rises():
    for c in CHECKS:
        if c.name.startswith("beats") and c.reference is not None:
            assert c.words(0.02).endswith(f"points above {c.versus or c.reference}"), c.name
        else:
            assert c.words(0.02).startswith("accuracy falls 2.0 points when"), c.name
            assert c.words(-0.02).startswith("accuracy rises 2.0 points when"), c.name
