"""Sweep files of the wrong shape, a preset for another dataset, and warnings that name their run.

Every bad sweep file gives one line on stderr, exit code 2, and nothing in the store: a table
where a list of names belongs, names given as numbers or nested lists, an empty file, a grid
whose every combination is skipped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from earlyprune import cli
from earlyprune.run.spec import PresetWarning, RunSpec

SRC = str(Path(__file__).resolve().parents[1] / "src")
TINY = 'dataset = "fashion-mnist-mini"\nepochs = 0.25\n'
FIELDS = [
    "method",
    "dataset",
    "preset",
    "model",
    "ablation",
    "scope",
    "optimizer",
    "allocation",
    "placement",
    "init",
    "sparsity",
    "seed",
    "epochs",
    "lr",
    "milestones",
]

BAD = {
    "empty file": "",
    "only a comment": "# nothing yet\n",
    "only a store": 'store = "runs"\n',
    "empty tables": "[base]\n[axes]\n[options]\ndense = false\n",
    "every combination skipped": f'[base]\n{TINY}method = "dense"\n[axes]\nsparsity = [0.5, 0.9]\n',
    "table for a list of names": f"[base]\n{TINY}[axes]\nmethod = {{ snip = 1 }}\n",
    "list of tables": f'[base]\n{TINY}[axes]\nmethod = [{{ name = "snip" }}]\n',
    "nested list": f'[base]\n{TINY}[axes]\nmethod = [["snip", "grasp"]]\n',
    "numbers for names": f"[base]\n{TINY}[axes]\nmethod = [1, 2]\n",
    "bools for names": f"[base]\n{TINY}[axes]\nmethod = [true]\n",
    "list in base": f'[base]\n{TINY}method = ["snip"]\nsparsity = 0.5\n',
    "table in base": f"[base]\n{TINY}method = {{ a = 1 }}\n",
    "number for a dataset": "[base]\ndataset = 3\n",
    "numbers for datasets": "[axes]\ndataset = [1, 2]\n",
    "list for a dataset": '[base]\ndataset = ["cifar10"]\n',
    "table in an include": f"[base]\n{TINY}[[include]]\nmethod = {{ a = 1 }}\n",
    "list for an optimizer": f'[base]\n{TINY}optimizer = ["sgd"]\n',
    "table for milestones": f"[base]\n{TINY}milestones = {{ a = 1 }}\n",
    "nested milestones": f"[base]\n{TINY}milestones = [[1]]\n",
    "empty axis": f"[base]\n{TINY}[axes]\nseed = []\n",
}


def cli_stderr(*argv: str) -> str:
    """The command's stderr from its own process (pytest records warnings in-process)."""
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "earlyprune.cli", *argv],
        env=env,
        text=True,
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


def sweep_run(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    toml = tmp_path / "s.toml"
    toml.write_text(text, encoding="utf-8")
    store = tmp_path / "store"
    code = cli.main(["sweep", "run", str(toml), "--store", str(store), "--workers", "1"])
    out, err = capsys.readouterr()
    assert not store.exists(), "a refused sweep stored something"
    assert out == "" and "Traceback" not in err
    return code, err


@pytest.mark.parametrize("text", list(BAD.values()), ids=list(BAD))
def test_a_bad_sweep_file_is_one_line_exit_2_nothing_stored(tmp_path, capsys, text):
    code, err = sweep_run(tmp_path, text, capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("earlyprune: error: "), err


def test_empty_and_run_less_files_say_there_are_no_runs(tmp_path, capsys):
    for text in (BAD["empty file"], BAD["every combination skipped"]):
        assert "no runs" in sweep_run(tmp_path, text, capsys)[1]


def _wrong(value_kind: str, draw_value: object) -> str:
    return {
        "table": f"{{ x = {draw_value} }}",
        "tables": f"[{{ x = {draw_value} }}]",
        "nested": f"[[{draw_value}]]",
    }[value_kind]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    where=st.sampled_from(["base", "axes", "include"]),
    field=st.sampled_from(FIELDS),
    kind=st.sampled_from(["table", "tables", "nested"]),
    inner=st.sampled_from(['"snip"', "1", "0.5", "true", '"cifar10"', "[]"]),
)
def test_fuzz_wrong_types_anywhere_give_one_line(tmp_path, capsys, where, field, kind, inner):
    value = _wrong(kind, inner)
    if where == "axes":
        text = f"[base]\n{TINY}[axes]\n{field} = [{value}]\n"
    elif where == "include":
        text = f"[base]\n{TINY}[[include]]\n{field} = {value}\n"
    else:
        text = f"[base]\n{TINY}{field} = {value}\n"
    if field == "milestones" and kind == "tables" and where != "axes":
        pass  # a list of tables is still refused: one line
    code, err = sweep_run(tmp_path, text, capsys)
    assert code == 2 and err.count("\n") == 1, (text, err)


def test_a_preset_for_another_dataset_warns_in_python_as_on_the_command_line():
    with pytest.warns(PresetWarning, match="'lenet_mnist' was made for mnist, not fashion-mnist"):
        spec = RunSpec(dataset="fashion-mnist-mini", preset="lenet_mnist", model="lenet_300_100")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        RunSpec(dataset="fashion-mnist-mini")  # its own preset: no warning
        spec.dense_spec()  # said once, with the spec it came from
        assert RunSpec.from_dict(spec.to_dict()).run_id == spec.run_id  # stored: not repeated


def test_a_sweep_with_such_a_preset_says_so_once(tmp_path):
    toml = tmp_path / "s.toml"
    toml.write_text(f'[base]\n{TINY}preset = "lenet_mnist"\n[axes]\nseed = [0, 1]\n', "utf-8")
    err = cli_stderr("sweep", "plan", str(toml))
    want = "earlyprune: warning: preset 'lenet_mnist' was made for mnist, not fashion-mnist-mini\n"
    assert err == want


def test_a_run_that_warns_names_its_run_and_method_in_one_line(tmp_path):
    """Inverted SynFlow on the demo net: half the weights tie at score -0.0 (shown as 0)."""
    err = cli_stderr(
        "run",
        "--dataset",
        "fashion-mnist-mini",
        "--method",
        "synflow",
        "--sparsity",
        "0.5",
        "--ablation",
        "invert",
        "--allow-disconnected",
        "--epochs",
        "0.01",
        "--store",
        str(tmp_path),
    )
    run_id = next(p.name for p in tmp_path.iterdir() if (p / "result.json").exists())
    lines = [line for line in err.splitlines() if "warning" in line]
    assert lines == [
        f"earlyprune: warning: {run_id} (synflow): 53,369 weights share the threshold score 0; "
        "369 of them were removed by network order, not by score"
    ], err
    assert "-0" not in err and "RuntimeWarning" not in err and ".py:" not in err
