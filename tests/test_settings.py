"""Each run setting is documented once (issue 21): the `run` flags, `run --help`, the sweep TOML
keys and `list presets` come from the ``RunSpec`` fields' metadata."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from pathlib import Path

import pytest

from earlyprune.cli import build_parser, main
from earlyprune.run import settings
from earlyprune.run.spec import RunSpec

#: `earlyprune run`'s flags as main had them before the flags were generated (issue 21).
SNAPSHOT = Path(__file__).parent / "data" / "run_flags_snapshot.json"
FIELDS = dataclasses.fields(RunSpec)


def _run_parser() -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["run"]


def _describe(parser: argparse.ArgumentParser) -> dict[str, dict]:
    out = {}
    for a in parser._actions:
        if not a.option_strings or isinstance(a, argparse._HelpAction):
            continue
        t = a.type
        out[" ".join(a.option_strings)] = {
            "dest": a.dest,
            "default": a.default,
            "type": None if t is None else getattr(t, "__name__", repr(t)),
            "action": type(a).__name__,
            "required": a.required,
            "nargs": a.nargs,
            "choices": list(a.choices) if a.choices else None,
            "metavar": a.metavar,
        }
    return out


def test_run_flags_are_those_main_had():
    """Same flag names, dests, defaults, types, actions: nothing changes for a user."""
    before = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    after = json.loads(json.dumps(_describe(_run_parser())))  # tuples → lists, as stored
    assert sorted(after) == sorted(before)
    for flag in before:
        assert after[flag] == before[flag], flag


def test_every_field_has_help_and_is_a_flag_or_says_why_not():
    parser = _run_parser()
    help_text = " ".join(parser.format_help().split())  # argparse wraps lines
    options = {o for a in parser._actions for o in a.option_strings}
    for f in FIELDS:
        assert f.metadata.get("help"), f"RunSpec.{f.name} has no help text"
        flag = settings.flag_name(f)
        if settings.is_flag(f):
            assert flag in options and re.search(rf"{flag}\b", help_text), flag
            assert " ".join(f.metadata["help"].split()[:3]) in help_text, f.name
        else:
            assert len(f.metadata["not_a_flag"]) > 10, f"{f.name}: say why it is not a flag"
            assert flag not in options


def test_each_flag_gives_its_field():
    """A value given as a flag reaches the field of the same name (no hand-written mapping)."""
    parser = _run_parser()
    base = ["--dataset", "mnist", "--method", "snip"]
    for f in FIELDS:
        if settings.is_flag(f) and f.name not in ("dataset", "method"):
            args = parser.parse_args(base + [settings.flag_name(f)] * (f.type.startswith("bool")))
            assert f.name in settings.from_args(args, RunSpec)
    args = parser.parse_args(base + ["--lr", "0.5", "--milestones", "none", "--no-nesterov"])
    got = settings.from_args(args, RunSpec)
    assert (got["lr"], got["milestones"], got["nesterov"]) == (0.5, (), False)


def test_toml_keys_are_the_fields_and_the_readme_lists_each_once():
    from earlyprune.sweeps.grid import toml_keys

    assert toml_keys() == tuple(f.name for f in FIELDS)
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    assert settings.field_table(RunSpec) in readme, "regenerate the README's run field table"


def test_unknown_sweep_key_lists_the_fields(tmp_path):
    from earlyprune.core.errors import SpecError
    from earlyprune.sweeps.grid import load_sweep

    path = tmp_path / "s.toml"
    path.write_text('[base]\ndataset = "mnist"\nsparsty = 0.9\n', encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        load_sweep(path)
    assert ", ".join(f.name for f in FIELDS) in str(caught.value)


def test_list_presets_explains_each_value_from_the_fields(capsys):
    assert main(["list", "presets"]) == 0
    out = capsys.readouterr().out
    for name in ("lr", "batch_size", "milestones", "rewind_step", "epochs"):
        text = next(f for f in FIELDS if f.name == name).metadata["help"]
        assert f"{name:<16} {text}" in out


def test_a_setting_with_an_unknown_group_is_refused():
    with pytest.raises(ValueError, match="unknown group"):
        settings.setting("x", group="training")
