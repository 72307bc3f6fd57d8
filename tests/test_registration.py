"""One registration form per concept, and every file of a registry folder registers something.

Each registry folder has one decorator; a file there either registers at least one entry with it
(read from its source, so a file that is never imported still fails) or says why it does not with
``__registers__ = ()  # reason``. The registries themselves are compared with a snapshot taken
before the forms were unified (tests/data/registries_before.json): same names, same order, same
fields.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

import earlyprune as ep
from earlyprune.data import DATASETS
from earlyprune.methods.allocation import ALLOCATIONS
from earlyprune.methods.base import register_allocation
from earlyprune.methods.placement import PLACEMENTS, placement_names
from earlyprune.methods.scoring import METHODS
from earlyprune.methods.sparse_training import SPARSE_TRAINERS
from earlyprune.methods.user import is_user_method
from earlyprune.models import MODELS

PACKAGE = Path(ep.__file__).parent
SNAPSHOT = Path(__file__).parent / "data" / "registries_before.json"

#: Folder -> (its one decorator, its registry).
FOLDERS = {
    "methods/scoring": ("register_method", METHODS),
    "methods/allocation": ("register_allocation", ALLOCATIONS),
    "methods/placement": ("register_placement", PLACEMENTS),
    "models": ("register_model", MODELS),
    "data": ("register_dataset", DATASETS),
}


def registry_files() -> list[tuple[str, Path]]:
    return [
        (folder, path)
        for folder in FOLDERS
        for path in sorted((PACKAGE / folder).glob("*.py"))
        if path.name != "__init__.py"
    ]


def registered_names(tree: ast.Module, decorator: str) -> list[str]:
    """The names a module registers with ``@decorator("name", ...)`` on a top-level def."""
    names = []
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef | ast.ClassDef):
            continue
        for deco in node.decorator_list:
            if (
                isinstance(deco, ast.Call)
                and isinstance(deco.func, ast.Name)
                and deco.func.id == decorator
                and deco.args
                and isinstance(deco.args[0], ast.Constant)
            ):
                names.append(deco.args[0].value)
    return names


def opt_out(source: str, tree: ast.Module) -> str | None:
    """The reason after ``__registers__ = ()``, or None when the module does not opt out."""
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and [getattr(t, "id", None) for t in node.targets] == ["__registers__"]
            and isinstance(node.value, ast.Tuple)
            and not node.value.elts
        ):
            line = source.splitlines()[node.lineno - 1]
            return line.partition("#")[2].strip()
    return None


def other_spellings(tree: ast.Module) -> list[str]:
    """Module-level ``X.add(...)`` / ``@X.register(...)``: the spellings the decorators replaced."""
    calls = [n.value for n in tree.body if isinstance(n, ast.Expr)]
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            calls += node.decorator_list
    found = []
    for node in calls:
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("add", "register")
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id.isupper()
        ):
            found.append(f"{node.func.value.id}.{node.func.attr} (line {node.lineno})")
    return found


@pytest.mark.parametrize(("folder", "path"), registry_files(), ids=lambda v: getattr(v, "name", v))
def test_every_file_registers_something(folder: str, path: Path) -> None:
    decorator, registry = FOLDERS[folder]
    source = path.read_text()
    tree = ast.parse(source)
    names = registered_names(tree, decorator)
    reason = opt_out(source, tree)
    where = f"{folder}/{path.name}"
    if reason is None:
        assert names, f"{where} registers nothing: decorate with @{decorator} or opt out"
    else:
        assert not names, f"{where} registers {names} but says __registers__ = ()"
        assert len(reason.split()) >= 3, f"{where}: __registers__ = () needs a # reason"
    for name in names:  # the decorator really ran: the file is imported by its package
        assert name in registry, f"{where} registers {name!r}, missing from the registry"
    assert not other_spellings(tree), f"{where}: use @{decorator}, not {other_spellings(tree)}"


def test_opt_outs_stay_few() -> None:
    """The exclusion list is explicit and small: a helper folder would be the better home."""
    helpers = [
        f"{folder}/{path.name}"
        for folder, path in registry_files()
        if opt_out(path.read_text(), ast.parse(path.read_text())) is not None
    ]
    assert len(helpers) <= 16, helpers


def test_the_checks_catch_a_file_that_registers_nothing() -> None:
    tree = ast.parse("def f(model, batch, mask, seed):\n    return {}\n")
    assert registered_names(tree, "register_method") == []
    assert opt_out("", tree) is None
    spelled = ast.parse('METHODS.add("x", m)\n@DATASETS.register("y")\ndef g(): ...\n')
    assert len(other_spellings(spelled)) == 2
    decorated = ast.parse('@register_method("x", summary="s")\ndef f(): ...\n')
    assert registered_names(decorated, "register_method") == ["x"]


def _method_fields(name: str) -> dict:
    m = METHODS.get(name)
    fields = ("rounds", "needs_batch", "summary", "revive", "budgeted", "allocation", "placement")
    return {k: getattr(m, k) for k in fields}


def test_registries_match_the_snapshot_taken_before() -> None:
    before = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    # Built-in names only: a user's scorer registered by an earlier test (a CLI run in this
    # process) stays registered, under its content-hashed name.
    assert [m for m in ep.list_methods() if not is_user_method(m)] == before["list_methods"]
    assert [m for m in ep.list_models() if not is_user_method(m)] == before["list_models"]
    assert [d for d in ep.list_datasets() if not is_user_method(d)] == before["list_datasets"]
    builtin = [n for n in METHODS.names() if not is_user_method(n)]
    assert {n: _method_fields(n) for n in builtin} == before["methods"]
    assert list(before["methods"]) == builtin
    assert {n: ALLOCATIONS.get(n).summary for n in ALLOCATIONS.names()} == before["allocations"]
    assert list(before["allocations"]) == ALLOCATIONS.names()
    assert PLACEMENTS.names() == list(before["placements"])
    assert [p for p in placement_names() if not is_user_method(p)] == before["placement_names"]
    models = [n for n in MODELS.names() if not is_user_method(n)]
    assert {n: list(MODELS.get(n).input_shape) for n in models} == before["models"]
    assert [d for d in DATASETS.names() if not is_user_method(d)] == before["datasets"]
    assert SPARSE_TRAINERS.names() == before["sparse_trainers"]


def test_registering_an_allocation_makes_no_method() -> None:
    @register_allocation("test_only_half", summary="every layer keeps n_keep / L")
    def half(shapes, n_keep):
        return [n_keep / len(shapes)] * len(shapes)

    try:
        assert "test_only_half" in ALLOCATIONS
        assert "test_only_half" not in METHODS
    finally:
        ALLOCATIONS.remove("test_only_half")


def test_baselines_are_allocation_plus_random_placement() -> None:
    for name in ("er", "erk", "smart_ratio", "uniform", "uniform_plus"):
        m = METHODS.get(name)
        assert (m.allocation, m.placement, m.needs_batch) == (name, "random", False)
