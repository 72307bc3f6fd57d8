"""Each run setting documented once: a ``RunSpec`` field's help, flag and TOML key in one place.

``setting`` builds a dataclass field whose metadata carries the help text and how
``earlyprune run`` offers it; ``flags`` and ``field_table`` read that metadata back, so the
``run`` flags, ``run --help``, the sweep TOML keys and ``earlyprune list presets`` come from the
fields instead of being written three times.

No torch import here: the CLI builds its parser (and ``--help``) without loading torch.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import Any

#: Where a flag appears in ``run --help`` (None: the command's main options).
GROUPS = {
    "hparams": "training hyperparameters (default: the preset's; see `earlyprune list presets`)",
    "sparse": "sparse training (set, rigl) and gradual pruning (gmp)",
}
_SAME = object()  # the flag's default is the field's


def setting(
    help: str,
    default: Any = None,
    *,
    not_a_flag: str = "",
    flag_default: Any = _SAME,
    parse: Callable[[str], Any] | None = None,
    required: bool = False,
    group: str | None = None,
    hash: bool = True,
    stored: bool = True,
) -> Any:
    """A ``RunSpec`` field that documents itself.

    Args:
        help: What the setting means, for ``--help``, the TOML key table and listings.
        default: The field's default (a value left at it stays out of the run id).
        not_a_flag: Why ``earlyprune run`` has no flag for it (empty: it has one,
            ``--`` + the name with ``-`` for ``_``).
        flag_default: The flag's default where it differs from the field's (e.g. None = "the
            preset's", decided by the command).
        parse: Converts the flag's text (default: from the field's type).
        required: The flag must be given.
        group: A ``GROUPS`` key: the ``--help`` section of the flag.
        hash: Part of the run id.
        stored: Written to the run's record.
    """
    if group is not None and group not in GROUPS:
        raise ValueError(f"unknown group {group!r}; valid: {', '.join(GROUPS)}")
    meta = {
        "help": help,
        "not_a_flag": not_a_flag,
        "flag_default": default if flag_default is _SAME else flag_default,
        "parse": parse,
        "required": required,
        "group": group,
    }
    if not hash:
        meta["hash"] = False
    if not stored:
        meta["stored"] = False
    return dataclasses.field(default=default, metadata=meta)


def flag_name(f: dataclasses.Field) -> str:
    """``--prune-step`` for the field ``prune_step``."""
    return "--" + f.name.replace("_", "-")


def is_flag(f: dataclasses.Field) -> bool:
    return "help" in f.metadata and not f.metadata["not_a_flag"]


def _sparsity(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"sparsity must be a number in [0, 1), got {text!r}"
        ) from None


def _milestones(text: str) -> tuple[float, ...]:
    if text.strip().lower() in ("", "none"):
        return ()
    try:
        return tuple(float(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"milestones must be epochs separated by commas (e.g. 80,120) or 'none', got {text!r}"
        ) from None


#: Text → value for a field's declared type (``from __future__ import annotations``: a string).
_PARSERS: dict[str, Callable[[str], Any] | None] = {"int": int, "float": float, "str": None}


def add_flags(parser: argparse.ArgumentParser, spec_class: type) -> None:
    """One flag per field of ``spec_class`` that is a flag, in field order, grouped."""
    groups = {key: parser.add_argument_group(title) for key, title in GROUPS.items()}
    for f in dataclasses.fields(spec_class):
        if not is_flag(f):
            continue
        meta = f.metadata
        target = groups[meta["group"]] if meta["group"] else parser
        text = meta["help"].replace("%", "%%")  # argparse formats help with %
        kind = str(f.type).removesuffix(" | None")
        if kind == "bool":
            # A bool that may stay unset (None = the preset's) can be switched both ways.
            on_off = argparse.BooleanOptionalAction if f.default is None else "store_true"
            target.add_argument(
                flag_name(f), action=on_off, default=meta["flag_default"], help=text
            )
            continue
        if meta["parse"] is None and kind not in _PARSERS:
            raise TypeError(f"RunSpec.{f.name}: give parse= for a flag of type {kind}")
        target.add_argument(
            flag_name(f),
            type=meta["parse"] or _PARSERS[kind],
            default=meta["flag_default"],
            required=meta["required"],
            help=text,
        )


def from_args(args: argparse.Namespace, spec_class: type) -> dict[str, Any]:
    """The values of every flag field, as parsed (``add_flags``)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(spec_class) if is_flag(f)}


def field_help(spec_class: type) -> dict[str, str]:
    """Field name → its help text (every field: each is a TOML key)."""
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(spec_class)}


def field_table(spec_class: type) -> str:
    """The Markdown table of every run field (the README's, checked by a test)."""
    rows = ["| field (TOML key) | flag of `earlyprune run` | meaning |", "|---|---|---|"]
    for f in dataclasses.fields(spec_class):
        flag = f"`{flag_name(f)}`" if is_flag(f) else f"none: {f.metadata['not_a_flag']}"
        rows.append(f"| `{f.name}` | {flag} | {f.metadata['help'].replace('|', '/')} |")
    return "\n".join(rows)
