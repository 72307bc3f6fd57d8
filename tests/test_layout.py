"""The package's module graph: no import cycle between masking ↔ density or pipeline ↔ stages.

Imports are read from the source (module-level and inside functions alike: a lazy import hides
a cycle, it does not remove it), and every module of the package imports on its own in a fresh
interpreter.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"


def imports_of(module: str) -> set[str]:
    """The ``earlyprune`` modules ``module`` imports anywhere in its source."""
    path = SRC / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = SRC / module.replace(".", "/") / "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m.startswith("earlyprune.")}


@pytest.mark.parametrize(
    ("a", "b"),
    [("earlyprune.masks.mask", "earlyprune.masks.density"), ("earlyprune.run.pipeline", "earlyprune.run.stages")],
)
def test_no_cycle_between(a, b):
    assert not (b in imports_of(a) and a in imports_of(b)), f"{a} and {b} import each other"


def test_pruning_modules_import_fresh():
    """Each module of the pruning core imports first, on its own (a cycle would break one)."""
    core = ("allocation", "placement", "scoring")
    modules = sorted(
        ".".join(p.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        for p in (SRC / "earlyprune").rglob("*.py")
        if p.parent.name in core or p.stem in ("api", "masking", "density")
    )
    code = (
        "import importlib, sys\n"
        "for m in sys.argv[1:]:\n"
        "    for k in [k for k in sys.modules if k.startswith('earlyprune')]: del sys.modules[k]\n"
        "    importlib.import_module(m)\n"
    )
    env = {"PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", code, *modules], check=True, env=env)
