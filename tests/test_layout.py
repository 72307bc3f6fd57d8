"""The package's module graph: layers, lowest first, and no import cycle anywhere.

Imports are read from the source, module-level and inside functions alike (a lazy import hides
a cycle or an upward dependency, it does not remove it); imports under ``if TYPE_CHECKING:`` are
left out (they never run). Importing ``a.b.c`` also runs the package ``a.b``, so that counts as an
edge too (except to a module's own enclosing packages, which are always initialized first).
Every module of the package also imports on its own in a fresh interpreter.
"""

from __future__ import annotations

import ast
import io
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

# The old module paths below are on purpose (relayout: keep-old-names).
SRC = Path(__file__).resolve().parent.parent / "src"
PKG = SRC / "earlyprune"

#: Layers, lowest first: a module may import its own layer or lower ones, never a higher one.
LAYERS = [
    ("core",),
    ("masks",),
    ("models", "data"),
    ("methods",),
    ("train",),
    ("run",),
    ("sweeps", "analysis"),
    ("apps",),
    ("cli",),
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
#: Outside the layers: the package's front door and the aliases of the old module paths.
ROOT = {"earlyprune", "earlyprune._compat"}
MAX_TOP_LEVEL_MODULES = 10
#: Size limits: a file or function past them has more than one job (split it along a seam).
MAX_FILE_LINES = 300
MAX_FUNCTION_LINES = 80
#: Where ``# fmt: skip`` is looked for (the formatter owns the layout of all of them).
FORMATTED = [SRC, SRC.parent / "tests", SRC.parent / "benchmarks", SRC.parent / "examples"]


def all_modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        parts = p.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if parts[-1] != "__main__":
            out[name] = p
    return out


MODULES = all_modules()


def _type_checking_only(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST):
    """Every import statement, except those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(node, ast.If) and _type_checking_only(node) and child in node.body:
                continue
            stack.append(child)


def imports_of(module: str) -> tuple[set[str], set[str]]:
    """(the package's modules ``module`` imports, imported ``earlyprune.*`` names that are none)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    targets: set[str] = set()
    unknown: set[str] = set()

    def add(name: str) -> None:
        if name in MODULES:
            targets.add(name)
        elif name.startswith("earlyprune."):
            unknown.add(name)

    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "earlyprune" or a.name.startswith("earlyprune."):
                    add(a.name)
            continue
        base = node.module or ""
        if node.level:  # relative: from .x import y
            anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            base = ".".join([*anchor, *([base] if base else [])])
        if not (base == "earlyprune" or base.startswith("earlyprune.")):
            continue
        for a in node.names:
            sub = f"{base}.{a.name}"
            add(sub if sub in MODULES else base)
    # Importing a.b.c runs a.b's __init__ first: an edge, unless it encloses the importer.
    for t in list(targets):
        parts = t.split(".")
        for cut in range(2, len(parts)):
            parent = ".".join(parts[:cut])
            if not (module == parent or module.startswith(parent + ".")):
                targets.add(parent)
    targets.discard(module)
    return {t for t in targets if t not in ROOT}, unknown


GRAPH = {m: imports_of(m)[0] for m in MODULES}


def layer(module: str) -> int:
    return RANK[module.split(".")[1]] if module not in ROOT else -1


def test_every_module_has_a_layer():
    stray = [m for m in MODULES if m not in ROOT and m.split(".")[1] not in RANK]
    assert not stray, f"modules outside every layer (add them to a layer folder): {stray}"


def test_at_most_ten_modules_in_the_package_folder():
    """Modules live in the layer folders; the package folder keeps only a few (files, not folders)."""
    top = sorted(p.name for p in PKG.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, f"{len(top)} modules in src/earlyprune: {top}"


def test_no_import_of_an_old_or_missing_module():
    bad = {m: sorted(imports_of(m)[1]) for m in MODULES if imports_of(m)[1]}
    assert not bad, f"imports of modules that do not exist (old paths?): {bad}"


def test_no_upward_import():
    upward = sorted(
        f"{a} ({LAYERS[layer(a)][0]}) -> {b} ({LAYERS[layer(b)][0]})"
        for a, targets in GRAPH.items()
        if a not in ROOT
        for b in targets
        if layer(b) > layer(a)
    )
    assert not upward, (
        "imports from a lower layer to a higher one (layers, lowest first: "
        + " < ".join("/".join(names) for names in LAYERS)
        + "):\n  "
        + "\n  ".join(upward)
    )


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the components with more than one module (each holds a cycle)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def one_cycle(graph: dict[str, set[str]], members: set[str]) -> list[str]:
    """A shortest cycle through the first member of a component (breadth-first)."""
    start = min(members)
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v] & members):
            if w == start:
                return [*paths[v], start]
            if w not in paths:
                paths[w] = [*paths[v], w]
                queue.append(w)
    return []


def test_no_import_cycle():
    cycles = strongly_connected(GRAPH)
    lines = []
    for comp in cycles:
        members = set(comp)
        edges = sorted(f"{a} -> {b}" for a in comp for b in GRAPH[a] if b in members)
        lines.append(
            f"cycle among {len(comp)} modules, e.g. {' -> '.join(one_cycle(GRAPH, members))}; "
            "its edges:\n    " + "\n    ".join(edges)
        )
    assert not cycles, "import cycles:\n  " + "\n  ".join(lines)


def test_the_checker_sees_function_level_imports_and_cycles():
    """The checker itself: a lazy import counts, TYPE_CHECKING does not, a cycle is found."""
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from earlyprune.cli import main\n"
        "def f():\n    from earlyprune.run import spec\n"
    )
    names = {n.module for n in _import_nodes(tree)}
    assert names == {"typing", "earlyprune.run"}
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_modules_import_fresh():
    """Each module imports first, on its own, in a fresh interpreter (a cycle would break one)."""
    modules = sorted(m for m in MODULES if m.split(".")[1:2] in (["core"], ["masks"], ["methods"]))
    code = (
        "import importlib, sys\n"
        "for m in sys.argv[1:]:\n"
        "    for k in [k for k in sys.modules if k.startswith('earlyprune')]: del sys.modules[k]\n"
        "    importlib.import_module(m)\n"
    )
    env = {"PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", code, *modules], check=True, env=env)


@pytest.mark.slow
@pytest.mark.parametrize(
    "old",
    [
        "earlyprune.scoring",
        "earlyprune.spec",
        "earlyprune.rng",
        "earlyprune.training",
        "earlyprune.store",
    ],
)
def test_documented_old_paths_still_import_with_a_warning(old):
    """The module paths the README documented before the move are aliases of the new modules."""
    code = (
        "import importlib, sys, warnings\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        f"    old = importlib.import_module({old!r})\n"
        "assert any(issubclass(x.category, FutureWarning) for x in w), w\n"
        "from earlyprune import _compat\n"
        f"assert old is importlib.import_module(_compat.ALIASES[{old!r}]), old\n"
        "print(old.__name__)\n"
    )
    env = {"PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, env=env, capture_output=True, text=True
    ).stdout
    assert out.strip() != old


def function_lengths(source: str) -> list[tuple[str, int, int]]:
    """(name, first line, length) of every def, nested ones included; decorators excluded."""
    return [
        (node.name, node.lineno, node.end_lineno - node.lineno + 1)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    ]


def _is_table(node: ast.AST) -> bool:
    """A literal display whose every row is a constant or again such a display."""
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.UnaryOp):  # -1.5 is a constant to the reader
        return isinstance(node.operand, ast.Constant)
    if isinstance(node, ast.Dict):
        return all(k is not None and _is_table(k) for k in node.keys) and all(
            _is_table(v) for v in node.values
        )
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        return all(_is_table(e) for e in node.elts)
    return False


def fmt_skips_outside_tables(source: str) -> list[int]:
    """Lines with ``# fmt: skip`` that do not end a statement assigning a literal table.

    Hand-aligned columns of numbers are the one layout the formatter cannot keep; everything
    else is shortened instead (one settings object rather than eleven arguments).
    """
    lines = [
        tok.start[0]
        for tok in tokenize.generate_tokens(io.StringIO(source).readline)
        if tok.type == tokenize.COMMENT and tok.string.lstrip("# ").startswith("fmt: skip")
    ]
    tables = {
        node.end_lineno
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Assign | ast.AnnAssign)
        and node.value is not None
        and isinstance(node.value, ast.List | ast.Tuple | ast.Dict | ast.Set)
        and _is_table(node.value)
    }
    return [line for line in lines if line not in tables]


def test_no_file_over_300_lines():
    long = {
        str(p.relative_to(SRC)): n
        for p in sorted(SRC.rglob("*.py"))
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_FILE_LINES
    }
    assert not long, f"files over {MAX_FILE_LINES} lines (split them along a seam): {long}"


def test_no_function_over_80_lines():
    long = [
        f"{p.relative_to(SRC)}:{line} {name} ({n} lines)"
        for p in sorted(SRC.rglob("*.py"))
        for name, line, n in function_lengths(p.read_text(encoding="utf-8"))
        if n > MAX_FUNCTION_LINES
    ]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n  " + "\n  ".join(long)


def test_fmt_skip_only_on_literal_tables():
    bad = [
        f"{p}:{line}"
        for root in FORMATTED
        for p in sorted(root.rglob("*.py"))
        for line in fmt_skips_outside_tables(p.read_text(encoding="utf-8"))
    ]
    assert not bad, "# fmt: skip outside a literal table (let the formatter lay it out): " + str(
        bad
    )


def test_the_limit_checkers_measure_what_they_claim():
    """Decorators do not count toward a function; a table may keep its columns, a call may not."""
    src = "@decorator\n@other\ndef f():\n    def g():\n        pass\n    return 1\n"
    assert function_lengths(src) == [("f", 3, 4), ("g", 4, 2)]
    table = "T = [\n    (1,  -2.5),\n    (10, 3.0),\n]  # fmt: skip\n"
    call = "x = f(1,  2)  # fmt: skip\nrows = [f(1),  2]  # fmt: skip\n"
    assert fmt_skips_outside_tables(table) == []
    assert fmt_skips_outside_tables(call) == [1, 2]
