"""User scoring functions: import ``file.py:func`` or ``package.module:func``, check, register.

Used by ``earlyprune check-method`` and by sweep workers, which start with the built-in registry
and register the user's function themselves (``run_specs(..., methods=...)``). The importer
(:func:`load_function`) also loads user networks (``earlyprune.models.user``) and data loaders
(``earlyprune.data.user``). A scoring function is ``f(model, batch, mask, seed)`` — the
``@register_method`` signature — or the short ``f(model, batch)``.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import signal
import threading
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from earlyprune.core.errors import RunInterrupted, SpecError
from earlyprune.core.user_code import import_target, is_file_target
from earlyprune.core.user_code import one_line as one_line  # re-exported: callers import it here

USAGE = "expected FILE.py:FUNCTION, package.module:FUNCTION or a registered method name"
#: Seconds one call of a user scoring function may take (`check-method --timeout`). A call
#: scores one small network on 100 images: far longer than this means it hangs.
DEFAULT_TIMEOUT_S = 120.0


class UserTimeout(BaseException):
    """A user function ran past its time limit (a BaseException: ``except Exception`` in the
    user's code must not swallow it)."""


class UserFileChanged(SpecError):
    """A user file no longer has the content its run id names (edited after the runs were
    planned): refused, never run with other code, never recorded as the run's failure."""


class UserCodeError(RuntimeError):
    """User code ended a call abnormally: ``sys.exit``, KeyboardInterrupt, or a time-out."""


def load_function(target: str, usage: str) -> tuple[Callable[..., Any], str]:
    """Imports ``FILE.py:FUNC`` or ``pkg.module:FUNC``; returns it and its content-hashed name.

    The name is ``<file stem or module>:<function>@<8 hex digits of the file's SHA-256>``: it
    stays the same while the file is unchanged and changes with any edit, wherever the file
    lies. Shared by user scoring functions, networks (``--model``) and data loaders.
    """
    where, _, func = target.rpartition(":")
    if not where or not func.isidentifier():
        raise SpecError(f"{target!r}: {usage}")
    module, digest = import_target(where)
    fn = getattr(module, func, None)
    if fn is None:
        found = sorted(
            n for n, v in vars(module).items() if inspect.isfunction(v) and not n.startswith("_")
        )
        raise SpecError(
            f"{where} has no function {func!r} (functions found: {', '.join(found) or 'none'})"
        )
    if not callable(fn):
        raise SpecError(f"{target}: {func!r} is a {type(fn).__name__}, not a function")
    stem = Path(where).stem if where.endswith(".py") else where
    return fn, f"{stem}:{func}@{digest}"


def guarded(fn: Callable[..., Any], label: str, timeout: float | None) -> Callable[..., Any]:
    """``fn`` under a time limit, with ``sys.exit``/KeyboardInterrupt/time-out as ``UserCodeError``.

    Inside a run a ``UserCodeError`` is the run's failure (recorded, the sweep goes on) rather
    than the end of the worker or of the whole sweep; the time-out, which may come from a loaded
    machine, leaves the run resumable (``RunInterrupted``).
    """

    def call(*args: Any) -> Any:
        try:
            with time_limit(timeout):
                return fn(*args)
        except SystemExit as exc:
            raise UserCodeError(f"{label} called sys.exit({exc.code!r})") from None
        except KeyboardInterrupt:
            raise UserCodeError(f"{label} raised KeyboardInterrupt") from None
        except UserTimeout:
            raise RunInterrupted(
                f"{label} did not return within {timeout:g} s (a hang? allow more with "
                "--timeout SECONDS)"
            ) from None

    call.__wrapped__ = fn  # type: ignore[attr-defined]
    call.__name__ = getattr(fn, "__name__", "score")
    return call


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raises ``UserTimeout`` in the block after ``seconds`` (main thread, Unix; else no limit)."""
    usable = (
        seconds is not None
        and seconds > 0
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )
    if not usable:
        yield
        return

    def expire(_signum: int, _frame: Any) -> None:
        raise UserTimeout()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))  # type: ignore[arg-type]
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def where_in_user_code(exc: BaseException, fn: Callable[..., Any] | None) -> str:
    """``file.py, line N`` of the deepest frame of ``exc`` in the user's file ('' if none)."""
    inner = getattr(fn, "__wrapped__", fn)
    home = getattr(getattr(inner, "__code__", None), "co_filename", None)
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if home is not None and f.filename == home]
    if not mine:
        return ""
    return f"{mine[-1].filename}, line {mine[-1].lineno}"


def absolute(target: str) -> str:
    """``target`` with a file path made absolute, so that any worker process can import it."""
    where, _, func = target.rpartition(":")
    if is_file_target(where):
        return f"{os.path.abspath(where)}:{func}"
    return target


def resolve_user_input(
    kind: str,
    value: str,
    file: str,
    *,
    registered: Callable[[str], bool],
    user_name: Callable[[str], bool],
    register: Callable[[str], str],
    make_absolute: Callable[[str], str] = absolute,
) -> tuple[str, str]:
    """The ``(name, file)`` a spec stores for a network or dataset, registering user ones here.

    Shared by ``--model`` and ``--dataset``: a registered name is kept (a stale file is dropped
    unless the name is a user one); a stored user name (``stem:f@digest``) is registered again
    from ``file`` and must still match its content; any other ``X:F`` is a target to register.

    Raises:
        SpecError: No file for a user name, or the file changed since the spec was made.
    """
    if registered(value):
        return value, file if user_name(value) else ""
    if user_name(value):
        if not file:
            raise SpecError(
                f"{kind} {value!r} is the user's own but the spec has no {kind}_file "
                "saying where it lies"
            )
        name = register(file)
        if name != value:
            raise UserFileChanged(
                f"{file} changed since this run was specified (it is now "
                f"{name!r}, the run needs {value!r}): plan the runs again"
            )
        return name, file
    if ":" in value:
        target = make_absolute(value)
        return register(target), target
    return value, file  # unknown: validate() says so, listing the registered ones


def check_signature(fn: Callable[..., Any], label: str) -> None:
    """The function must be callable as ``fn(model, batch, mask, seed)`` or ``fn(model, batch)``."""
    if arity(fn) is None:
        raise SpecError(
            f"{label}{inspect.signature(fn)} must take the positional arguments "
            "(model, batch, mask, seed) — as @register_method scorers do — or just (model, batch)"
        )


def arity(fn: Callable[..., Any]) -> int | None:
    """4 if ``fn`` can be called as ``fn(model, batch, mask, seed)``, else 2 if as
    ``fn(model, batch)``, else None. A signature torch cannot inspect counts as 4."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return 4  # a builtin without a signature: the probe call finds out
    for n in (4, 2):
        try:
            sig.bind(*[object()] * n)
        except TypeError:
            continue
        return n
    return None
