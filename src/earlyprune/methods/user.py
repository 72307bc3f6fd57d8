"""A user's scoring function as a method: resolve ``FILE.py:FUNC``, register it, in any process.

Above ``core.user_functions`` (which imports and checks the user's file) because registering
needs the method registry.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from earlyprune.core.errors import SpecError
from earlyprune.core.user_functions import (
    DEFAULT_TIMEOUT_S,
    USAGE,
    check_signature,
    guarded,
    load_function,
    resolve_user_input,
)
from earlyprune.methods.scoring import METHODS, method_from_function


@dataclass(frozen=True)
class Target:
    """A resolved scoring method: its run-spec name, the ``Method``, and the user's function."""

    name: str
    method: Any  # earlyprune.methods.scoring.Method
    function: Callable[..., Any] | None  # None for a built-in method
    label: str  # what the user typed, for messages


def resolve(target: str, timeout: float | None = DEFAULT_TIMEOUT_S) -> Target:
    """Imports ``target`` and checks its signature; every mistake is a one-line ``SpecError``.

    The user's function is wrapped by :func:`guarded` (``timeout`` seconds per call).
    """
    if ":" not in target:
        if target in METHODS:
            return Target(target, METHODS.get(target), None, target)
        raise SpecError(f"{target!r}: {USAGE} (registered: {', '.join(METHODS.names())})")
    fn, name = load_function(target, USAGE)
    check_signature(fn, target)
    safe = guarded(fn, target, timeout)  # its signature is fn's (``__wrapped__``)
    return Target(
        name, method_from_function(name, safe, f"user scoring function {target}"), safe, target
    )


def register_target(target: str) -> str:
    """Registers ``target``'s method in this process (for worker processes) and returns its name.

    A name already registered is kept: it holds the file's digest, so it is the same code (and
    `check-method` registered it with the user's ``--timeout``).
    """
    t = resolve(target)
    if t.function is not None and t.name not in METHODS:
        METHODS.add(t.name, t.method)
    return t.name


#: A user scorer's registered name: ``stem:function@<8 hex>`` (``nosource``: a module without).
USER_NAME = re.compile(r"^.+:[A-Za-z_]\w*@([0-9a-f]{8}|nosource)$")


def is_user_method(name: str) -> bool:
    """Whether ``name`` is a user scorer's content-hashed name (``stem:function@digest``)."""
    return bool(USER_NAME.match(name))


def resolve_method(kind: str, value: str | None, file: str) -> tuple[str | None, str]:
    """The ``(name, file)`` a spec stores for ``method``, ``allocation`` or ``placement``.

    ``FILE.py:FUNC`` / ``pkg.module:FUNC`` is imported, checked and registered as a scorer; a
    stored user name is registered again from ``file`` (a worker) and must still match it.
    Registered names are kept; anything else is left to the spec's validation.
    """
    if not isinstance(value, str) or not isinstance(file, str):
        return value, file
    if not file and is_user_method(value) and value not in METHODS:
        # Registered by other means (``run_specs(methods=...)`` in workers), or unknown, which
        # the spec's validation reports: a spec made through the Python API, without a file.
        return value, file
    return resolve_user_input(
        kind,
        value,
        file,
        registered=METHODS.__contains__,
        user_name=is_user_method,
        register=register_target,
    )


@contextlib.contextmanager
def registered(target: Target) -> Iterator[None]:
    """Registers a user method for the duration of a check; built-in methods are left alone."""
    if target.function is None:
        yield
        return
    previous = METHODS.get(target.name) if target.name in METHODS else None
    METHODS.add(target.name, target.method, replace=True)
    try:
        yield
    finally:
        METHODS.remove(target.name)
        if previous is not None:
            METHODS.add(target.name, previous)
