"""The README's "Your own network and data" commands, run exactly as written, in a fresh folder.

Covers the user's own network and an npz dataset through `run`, a sweep (local worker processes,
which must import the files themselves) and `check-method`, and a loader file through IMP.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Your own network and data", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_readme_example_runs_as_written(tmp_path):
    commands = readme_commands()
    assert [c.split()[0] for c in commands] == ["python"] + ["earlyprune"] * 4
    shutil.copytree(
        ROOT / "examples" / "own",
        tmp_path / "examples" / "own",
        ignore=shutil.ignore_patterns("*.npz", "__pycache__"),
    )
    bin_dir = str(Path(sys.executable).parent)  # `python` and `earlyprune` of this environment
    env = {
        **os.environ,
        "PATH": bin_dir + os.pathsep + os.environ["PATH"],
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT / "src"),
    }
    outputs = []
    for command in commands:
        done = subprocess.run(
            command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-2000:])
        outputs.append(done.stdout)
    assert "my_net:build@" in outputs[1] and "npz:my_data@" in outputs[1]
    assert "snip  s=90.0%" in outputs[1] and "test accuracy" in outputs[1]
    assert "my_loader:load@" in outputs[2] and "imp  s=36.0%" in outputs[2]
    assert "0 failed" in outputs[3]
    assert "beats random at 97.2 %:" in outputs[4]
    results = [json.loads(p.read_text()) for p in (tmp_path / "runs" / "own").glob("*/result.json")]
    assert {r["status"] for r in results} == {"ok"}
    # run (snip) + the loader's dense + 2 IMP levels + the sweep's dense, random and
    # magnitude after training (its snip run is the one `run` made).
    assert len(results) == 7
    specs = [r["spec"] for r in results]
    assert all(s["model"].startswith("my_net:build@") for s in specs)
    assert all(os.path.isabs(s["model_file"].rsplit(":", 1)[0]) for s in specs)


def scorer_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Is your new method any good?", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section.split("Your scorer goes wherever", 1)[1], re.S)
    return [line.split("  #")[0].strip() for line in block.group(1).splitlines() if line.strip()]


@pytest.mark.slow
def test_the_readme_own_scorer_path_runs_as_written(tmp_path):
    """`run`, a sweep axis and `check-method` with a grid, all on the user's scoring file."""
    commands = scorer_commands()
    assert [c.split()[:2] for c in commands[1:]] == [
        ["earlyprune", "run"],
        ["earlyprune", "sweep"],
        ["earlyprune", "check-method"],
    ]
    assert "--sparsities 0.9,0.97 --seeds 0,1" in commands[3]
    shutil.copytree(
        ROOT / "examples" / "own",
        tmp_path / "examples" / "own",
        ignore=shutil.ignore_patterns("*.npz", "__pycache__"),
    )
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": bin_dir + os.pathsep + os.environ["PATH"],
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT / "src"),
    }
    outputs = []
    for command in commands:
        done = subprocess.run(
            command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
        )
        assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-2000:])
        outputs.append(done.stdout)
    run_id = outputs[1].split()[1]  # "run <id> → runs/mine/<id>"
    assert "my_score:my_score@" in outputs[1] and "test accuracy" in outputs[1]
    results = [
        json.loads(p.read_text()) for p in (tmp_path / "runs" / "mine").glob("*/result.json")
    ]
    assert {r["status"] for r in results} == {"ok"}
    # The sweep served `run`'s run (same id) and added snip, 97 % and the dense run.
    assert len(results) == 5 and run_id in {r["run_id"] for r in results}
    mine = [r["spec"] for r in results if r["spec"]["method"].startswith("my_score:my_score@")]
    assert len(mine) == 2 and all(os.path.isabs(s["method_file"].split(":")[0]) for s in mine)
    label = "examples/own/my_score.py:my_score"
    assert f"check-method {label}" in outputs[3]
    for s in ("90.0", "97.0"):
        assert f"beats random at {s} %:" in outputs[3]
    assert any(line.startswith(label + " ") for line in outputs[3].splitlines())
    check_runs = [
        json.loads(p.read_text()) for p in (tmp_path / "runs" / "mine-check").glob("*/result.json")
    ]
    assert {r["spec"]["seed"] for r in check_runs} == {0, 1}
    assert {r["spec"]["sparsity"] for r in check_runs if r["spec"]["method"] != "dense"} == {
        0.9,
        0.97,
    }
