"""The README's five extension points, copied verbatim from the README and run as it says.

Each recipe in "How the code is laid out" is a ```python block whose first line names the file
(``# my_scorer.py``), followed by a ```bash block with the command that uses it. This test writes
each file into a temporary folder and runs that command there (``earlyprune ...`` in process,
``python FILE.py`` as a script), so the README cannot drift from the code.
"""

from __future__ import annotations

import json
import re
import runpy
import shlex
from pathlib import Path

import pytest

from earlyprune.cli import main
from earlyprune.methods.base import ALLOCATIONS

README = Path(__file__).resolve().parents[1] / "README.md"
RECIPE = re.compile(r"```python\n# (\w+\.py)\n(.*?)```\s*```bash\n(.*?)\n```", re.S)


def section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## How the code is laid out")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def recipes() -> dict[str, tuple[str, str]]:
    return {name: (code, command) for name, code, command in RECIPE.findall(section())}


def test_the_readme_has_the_five_recipes() -> None:
    assert sorted(recipes()) == [
        "my_allocation.py",
        "my_data.py",
        "my_net.py",
        "my_placement.py",
        "my_scorer.py",
    ]


def _run(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    argv = shlex.split(command)
    if argv[0] == "python":
        runpy.run_path(argv[1], run_name="__main__")
    else:
        assert argv[0] == "earlyprune", command
        assert main(argv[1:]) == 0, capsys.readouterr()
    return capsys.readouterr().out


def _result(store: Path) -> dict:
    (result,) = store.glob("*/result.json")
    return json.loads(result.read_text())


@pytest.mark.parametrize("name", ["my_scorer.py", "my_placement.py", "my_net.py"])
def test_a_file_recipe_runs_as_the_readme_says(name, tmp_path, monkeypatch, capsys) -> None:
    code, command = recipes()[name]
    monkeypatch.chdir(tmp_path)
    (tmp_path / name).write_text(code)
    _run(command, capsys)
    result = _result(tmp_path / "runs" / "ext")
    assert result["status"] == "complete" or "test_accuracy" in result
    assert 0.0 <= result["test_accuracy"] <= 1.0


def test_the_dataset_recipe_runs_with_the_network_recipe(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("my_net.py", "my_data.py"):
        (tmp_path / name).write_text(recipes()[name][0])
    _run(recipes()["my_data.py"][1], capsys)
    spec = json.loads(next((tmp_path / "runs" / "ext").glob("*/spec.json")).read_text())
    assert spec["dataset"].startswith("my_data:load@")
    assert spec["model"].startswith("my_net:build@")


def test_the_allocation_recipe_registers_and_prunes(tmp_path, monkeypatch, capsys) -> None:
    code, command = recipes()["my_allocation.py"]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_allocation.py").write_text(code)
    try:
        out = _run(command, capsys)
        assert "by_depth" in ALLOCATIONS
    finally:
        ALLOCATIONS.remove("by_depth")
    densities = [float(d) for d in re.findall(r": ([0-9.]+)", out)]
    assert len(densities) == 3 and densities[0] > densities[-1]  # later layers sparser
