"""Warnings as one line that says whose they are: ``earlyprune: warning: <run id> (<method>): …``.

The command line prints every warning as ``earlyprune: warning: MESSAGE`` without Python's
``file:line: Category`` header and source line (:func:`one_line_warnings`); a run tags the
warnings raised while it runs with its id and method (:func:`tagged_warnings`), so a line in
a sweep's output says which of hundreds of runs it came from.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator


def format_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    line: str | None = None,
) -> str:
    """``warnings.formatwarning`` for the command line: one line, no source location."""
    return f"earlyprune: warning: {message}\n"


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """Prints warnings as :func:`format_warning` lines inside the block (the CLI's whole run)."""
    with warnings.catch_warnings():  # filters a command sets end with it
        previous = warnings.formatwarning
        warnings.formatwarning = format_warning
        try:
            yield
        finally:
            warnings.formatwarning = previous


@contextlib.contextmanager
def tagged_warnings(prefix: str) -> Iterator[None]:
    """Warnings raised inside the block are shown as ``PREFIX: message`` (same category).

    Nested blocks (a run that trains its dense run first) tag with the innermost prefix only.
    """
    with warnings.catch_warnings():  # restores showwarning (and the filters) on exit
        show = getattr(warnings.showwarning, "untagged", warnings.showwarning)

        def tagged(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
            show(category(f"{prefix}: {message}"), category, filename, lineno, file, line)

        tagged.untagged = show  # type: ignore[attr-defined]
        warnings.showwarning = tagged
        yield
