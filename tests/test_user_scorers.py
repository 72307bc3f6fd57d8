"""The user's scoring function wherever a method name goes, and modules beside user files.

``--method FILE.py:FUNC`` (run, sweep axes, ``--allocation``/``--placement``), content-hashed
run ids that cover local modules the file imports, workers refusing a file that changed, and
``check-method --sparsities/--seeds``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from earlyprune import cli
from earlyprune.apps import check_method as check
from earlyprune.core.errors import SpecError
from earlyprune.methods.scoring import METHODS
from earlyprune.methods.user import resolve
from earlyprune.models import MODELS
from earlyprune.run.spec import RunSpec
from earlyprune.run.store import RunStore
from earlyprune.sweeps.executors.base import INTERRUPTED, run_one
from earlyprune.sweeps.grid import load_sweep

SCORER = """
import earlyprune as ep
{imports}

def score(model, batch):
    return {{n: w.detach().abs() * {factor} for n, w in ep.prunable(model).items()}}


def full(model, batch, mask, seed):
    return {{n: w.detach().abs() for n, w in ep.prunable(model).items()}}


def wrong(model):
    return {{}}
"""
NET = """
from torch import nn
from layers import head


def build(num_classes, input_shape):
    c, h, w = input_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, 16), nn.ReLU(), head(16, num_classes))
"""
LAYERS = "from torch import nn\n\n\ndef head(n, k):\n    return nn.Linear(n, k)\n"


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")
    return folder / name


@pytest.fixture
def own(tmp_path: Path) -> Path:
    """A folder with a scorer that imports a module beside it (``from blocks import factor``)."""
    write(tmp_path / "own", "blocks.py", "FACTOR = 2.0\n")
    imports = "from blocks import FACTOR"
    write(tmp_path / "own", "my_scores.py", SCORER.format(imports=imports, factor="FACTOR"))
    write(tmp_path / "own", "plain.py", SCORER.format(imports="", factor="1.0"))
    return tmp_path / "own"


def tiny_run(store: Path, *flags: str) -> list[str]:
    return [
        "run",
        "--dataset",
        "fashion-mnist-mini",
        "--sparsity",
        "0.9",
        "--epochs",
        "0.1",
        "--store",
        str(store),
        *flags,
    ]


# ---- identity --------------------------------------------------------------------------------
def test_a_file_without_local_imports_keeps_its_digest(own):
    source = (own / "plain.py").read_bytes()
    name = resolve(f"{own}/plain.py:score").name
    assert name == f"plain:score@{hashlib.sha256(source).hexdigest()[:8]}"


def test_a_local_module_is_importable_and_part_of_the_id(own):
    before = RunSpec(method=f"{own}/my_scores.py:score", sparsity=0.9)
    source = (own / "my_scores.py").read_bytes()
    assert before.method.startswith("my_scores:score@")
    assert not before.method.endswith(hashlib.sha256(source).hexdigest()[:8])  # blocks counted
    assert str(own) not in sys.path  # on the path only while the file loaded
    assert RunSpec(method=f"{own}/my_scores.py:score", sparsity=0.9).run_id == before.run_id
    write(own, "blocks.py", "FACTOR = 3.0  # edited\n")
    after = RunSpec(method=f"{own}/my_scores.py:score", sparsity=0.9)
    assert after.method != before.method and after.run_id != before.run_id
    assert (own / "my_scores.py").read_bytes() == source  # only the module beside it changed


def test_the_same_folder_elsewhere_gives_the_same_ids(own, tmp_path):
    first = RunSpec(method=f"{own}/my_scores.py:score", sparsity=0.9)
    copy = tmp_path / "elsewhere" / "own"
    for f in own.glob("*.py"):
        write(copy, f.name, f.read_text())
    second = RunSpec(method=f"{copy}/my_scores.py:score", sparsity=0.9)
    assert second.run_id == first.run_id and second.method_file.startswith(str(copy))


def test_a_network_file_may_import_its_own_modules(tmp_path):
    write(tmp_path / "net", "layers.py", LAYERS)
    net = write(tmp_path / "net", "net.py", NET)
    spec = RunSpec(model=f"{net}:build", method="snip", sparsity=0.5)
    assert spec.model in MODELS and spec.model_file == f"{net}:build"
    write(tmp_path / "net", "layers.py", LAYERS.replace("(n, k)", "(n, k, bias=False)"))
    again = RunSpec(model=f"{net}:build", method="snip", sparsity=0.5)
    assert again.model != spec.model and again.run_id != spec.run_id
    # A worker (pickled spec, fresh registry) refuses the old name: the content is not its.
    MODELS.remove(spec.model)
    with pytest.raises(SpecError, match="changed since this run was specified"):
        RunSpec(model=spec.model, model_file=spec.model_file, method="snip", sparsity=0.5)


# ---- run, allocation, placement, sweep --------------------------------------------------------
def test_run_takes_a_scorer_file_and_names_it_in_the_result(own, tmp_path, capsys):
    store = tmp_path / "runs"
    assert cli.main(tiny_run(store, "--method", f"{own}/my_scores.py:score")) == 0
    (result,) = [json.loads(p.read_text()) for p in store.glob("*/result.json")]
    assert result["status"] == "ok" and result["spec"]["method"].startswith("my_scores:score@")
    assert result["spec"]["method_file"] == f"{own}/my_scores.py:score"
    assert "my_scores:score@" in capsys.readouterr().out


def test_allocation_and_placement_take_scorer_files(own, tmp_path):
    store = tmp_path / "runs"
    flags = [
        "--method",
        "snip",
        "--allocation",
        f"{own}/plain.py:full",
        "--placement",
        f"{own}/my_scores.py:score",
    ]
    assert cli.main(tiny_run(store, *flags)) == 0
    (result,) = [json.loads(p.read_text()) for p in store.glob("*/result.json")]
    spec = result["spec"]
    assert spec["allocation"].startswith("plain:full@") and spec["placement_file"].endswith(
        "my_scores.py:score"
    )
    assert result["status"] == "ok"


def test_a_sweep_axis_mixes_scorer_files_and_names(own, tmp_path, monkeypatch):
    monkeypatch.chdir(own.parent)
    toml = write(
        tmp_path,
        "sweep.toml",
        """
[base]
dataset = "fashion-mnist-mini"
epochs = 0.1
[axes]
method = ["own/my_scores.py:score", "snip"]
sparsity = [0.9]
""",
    )
    specs = load_sweep(toml).specs
    methods = sorted(s.method for s in specs)
    alone = RunSpec(
        dataset="fashion-mnist-mini",
        epochs=0.1,
        preset="demo",
        method=f"{own}/my_scores.py:score",
        sparsity=0.9,
    )
    assert methods[1].startswith("my_scores:score@") and alone.run_id in {s.run_id for s in specs}
    assert [s.method for s in specs if s.method_file] == [alone.method]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("nope.py:score", "no such file"),
        ("plain.py:missing", "has no function 'missing'"),
        ("plain.py:wrong", "must take the positional arguments"),
    ],
)
@pytest.mark.parametrize("flag", ["--method", "--allocation", "--placement"])
def test_a_bad_target_is_one_line_and_writes_nothing(own, tmp_path, capsys, target, message, flag):
    store = tmp_path / "runs"
    flags = ["--method", "snip"] if flag != "--method" else []
    code = cli.main(tiny_run(store, *flags, flag, f"{own}/{target}"))
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not store.exists()


def test_a_worker_refuses_a_file_that_changed_and_stores_nothing(own, tmp_path, capsys):
    spec = RunSpec(
        dataset="fashion-mnist-mini",
        preset="demo",
        epochs=0.1,
        method=f"{own}/my_scores.py:score",
        sparsity=0.9,
    )
    write(own, "blocks.py", "FACTOR = -1.0  # edited after planning\n")
    METHODS.remove(spec.method)  # as a fresh worker process: it imports the file again
    store = RunStore(tmp_path / "runs")
    assert run_one(spec, str(store.root), None, False, False) == INTERRUPTED
    assert "changed since this run was specified" in capsys.readouterr().err
    assert store.read_result(spec.run_id) is None
    assert spec.method not in METHODS  # the edited code was not registered under the old name


# ---- check-method's grid ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--sparsities", "0.9,1.5"], "'1.5' is not a fraction in (0, 1)"),
        (["--sparsities", "90,97"], "'90' is not a fraction"),
        (["--sparsities", "0.9,,0.97"], "without gaps"),
        (["--sparsities", "0.9,0.9"], "'0.9' is a repeated fraction"),
        (["--sparsities", "nan"], "'nan' is not a fraction"),
        (["--seeds", "0,1,x"], "'x' is not a seed"),
        (["--seeds", "-1"], "'-1' is not a seed"),
        (["--seeds", "1,1"], "'1' is a repeated seed"),
        (["--seeds", ""], "without gaps"),
    ],
)
def test_check_method_grid_nonsense_is_one_line(own, tmp_path, capsys, flags, message):
    store, out = tmp_path / "runs", tmp_path / "report"
    argv = ["check-method", f"{own}/plain.py:score", "--store", str(store), "--out", str(out)]
    assert cli.main([*argv, *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not store.exists() and not out.exists()


def test_check_method_grid_flags_set_the_sparsities_and_seeds():
    args = cli.build_parser().parse_args(
        ["check-method", "x.py:f", "--quick", "--sparsities", "0.9, 0.97", "--seeds", "0,1,2,3,4"]
    )
    grid = check.grid_from_args(args)
    assert grid.sparsities == (0.9, 0.97) and grid.seeds == (0, 1, 2, 3, 4)
    assert grid.preset == check.QUICK.preset
    default = check.grid_from_args(cli.build_parser().parse_args(["check-method", "x.py:f"]))
    assert default == check.FULL


def test_two_folders_with_a_module_of_the_same_name_each_get_their_own(tmp_path):
    names = []
    for i, factor in enumerate(("2.0", "5.0")):
        folder = tmp_path / f"project{i}"
        write(folder, "blocks.py", f"FACTOR = {factor}\n")
        write(folder, "s.py", SCORER.format(imports="from blocks import FACTOR", factor="FACTOR"))
        target = resolve(f"{folder}/s.py:score")
        names.append(target.name)
        assert target.function.__wrapped__.__globals__["FACTOR"] == float(factor)
    assert names[0] != names[1]
