"""Importing the user's own files, and the content digest that names them in run ids.

A user file (a scorer, a network, a data loader) may import modules that sit beside it
(``from blocks import block``): while the file loads, its folder is first on ``sys.path``, and
the modules loaded from that folder are part of its identity. The digest is

- a file with no local imports: the first 8 hex digits of the file's SHA-256 — exactly what
  earlier versions stored, so existing run ids stay as they are;
- otherwise: SHA-256 over the file's bytes, then, sorted by path relative to the folder, each
  local module's relative path and SHA-256 — editing ``blocks.py`` gives new run ids, while
  moving the whole folder elsewhere does not.

Local modules already imported (by an earlier load, in this process) are dropped from
``sys.modules`` before the file loads, so an edit is read again and counted; bytecode is neither
written nor trusted from an earlier write of ours (``sys.dont_write_bytecode``), so an edit
within the same second is never hidden by a cached ``.pyc``. The folder is on ``sys.path`` only
while the file loads: modules it imports there stay loaded, so a function may import them
again when called, but a local module first imported inside a function is neither found nor
part of the identity — import local modules at the top of the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from earlyprune.core.errors import SpecError

#: Packages never counted as (nor evicted as) local modules, even where the user's file lies
#: beside them (a file in an editable install's ``src/`` folder).
_NEVER_LOCAL = ("earlyprune",)
#: Names of the modules found beside user files so far in this process.
_SEEN: set[str] = set()


def is_file_target(where: str) -> bool:
    """Whether ``where`` (the part before ``:FUNC``) names a file rather than a module."""
    return where.endswith(".py") or os.sep in where or "/" in where


def import_target(where: str) -> tuple[ModuleType, str]:
    """The module of a file path or dotted name, and its content digest (module docstring).

    A dotted module is imported as ``python -m`` would (the current folder importable); its
    digest covers its own source only ("nosource" if it has none).

    Raises:
        SpecError: No such file or module, or importing it failed (one line).
    """
    if is_file_target(where):
        return _import_file(where)
    with _on_path(os.getcwd()):
        try:
            module = importlib.import_module(where)
        except Exception as exc:
            raise SpecError(f"cannot import module {where!r}: {one_line(exc)}") from None
    try:
        source = Path(inspect.getsourcefile(module) or "").read_bytes()
    except (OSError, TypeError):
        return module, "nosource"
    return module, hashlib.sha256(source).hexdigest()[:8]


def _import_file(where: str) -> tuple[ModuleType, str]:
    path = Path(where).expanduser()
    if not path.is_file():
        raise SpecError(f"no such file: {where}")
    source = path.read_bytes()
    folder = path.resolve().parent
    mod_name = f"earlyprune_user_{path.stem}_{hashlib.sha256(source).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise SpecError(f"cannot load {where} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module  # dataclasses and pickling look modules up here
    try:
        with beside(folder) as local:
            spec.loader.exec_module(module)
    except SystemExit as exc:  # module-level sys.exit() must not end earlyprune silently
        sys.modules.pop(mod_name, None)
        raise SpecError(f"importing {where} called sys.exit({exc.code!r})") from None
    except Exception as exc:
        sys.modules.pop(mod_name, None)
        at = _deepest_in(exc, path)
        raise SpecError(f"importing {where} failed{at}: {one_line(exc)}") from exc
    return module, digest(source, local, folder)


def digest(source: bytes, local: dict[str, Path], folder: Path) -> str:
    """8 hex digits naming a file and the local modules it loaded (module docstring)."""
    if not local:
        return hashlib.sha256(source).hexdigest()[:8]
    h = hashlib.sha256(source)
    for rel, file in sorted({p.relative_to(folder).as_posix(): p for p in local.values()}.items()):
        h.update(b"\0" + rel.encode() + b"\0" + hashlib.sha256(file.read_bytes()).digest())
    return h.hexdigest()[:8]


@contextlib.contextmanager
def beside(folder: Path) -> Iterator[dict[str, Path]]:
    """``folder`` importable during the block; yields a dict filled, at the end, with the
    modules (name → file) loaded from it meanwhile. Local modules loaded before are re-read."""
    # Also a module of the same name loaded beside another user file: this folder's own
    # ``blocks.py`` must not be served from another folder's ``blocks`` cached in sys.modules.
    earlier = {
        n: m
        for n, m in list(sys.modules.items())
        if local_file(n, m, folder) or (n in _SEEN and _provides(folder, n))
    }
    for name in earlier:
        del sys.modules[name]
    found: dict[str, Path] = {}
    writes = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    importlib.invalidate_caches()  # a file created since the last import must be seen
    try:
        with _on_path(str(folder), first=True):
            yield found
    finally:
        sys.dont_write_bytecode = writes
        for name, module in list(sys.modules.items()):
            file = local_file(name, module, folder)
            if file is not None:
                found[name] = file
        _SEEN.update(found)
        for name, module in earlier.items():  # still in use by files loaded before
            sys.modules.setdefault(name, module)


def local_file(name: str, module: ModuleType | None, folder: Path) -> Path | None:
    """The file of ``module`` if it was imported from ``folder`` (its top-level package or
    module lies there), else None."""
    file = getattr(module, "__file__", None)
    if not file or not _provides(folder, name):
        return None
    path = Path(file).resolve()
    return path if path.is_relative_to(folder) else None


def _provides(folder: Path, name: str) -> bool:
    """Whether ``import name`` would find its top-level module or package in ``folder``."""
    top = name.partition(".")[0]
    if top in _NEVER_LOCAL or top in sys.stdlib_module_names:
        return False
    return (folder / f"{top}.py").is_file() or (folder / top).is_dir()


@contextlib.contextmanager
def _on_path(entry: str, first: bool = False) -> Iterator[None]:
    """``entry`` on ``sys.path`` during the block (first, if ``first``; else only if absent)."""
    added = first or (entry not in sys.path and "" not in sys.path)
    if added:
        sys.path.insert(0, entry)
    try:
        yield
    finally:
        if added:
            if sys.path and sys.path[0] == entry:
                del sys.path[0]
            else:
                with contextlib.suppress(ValueError):
                    sys.path.remove(entry)


def _deepest_in(exc: BaseException, filename: Path) -> str:
    mine = os.path.abspath(filename)
    frames = [
        f for f in traceback.extract_tb(exc.__traceback__) if os.path.abspath(f.filename) == mine
    ]
    return f" at {frames[-1].filename}, line {frames[-1].lineno}" if frames else ""


def one_line(exc: BaseException) -> str:
    """``TypeError: message`` on one line (the type alone if there is no message)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
