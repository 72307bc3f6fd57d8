"""A sweep file's run tables expanded into specs: ``[base]`` × ``[axes]`` + ``[[include]]``.

Every key of those tables is a ``RunSpec`` field (``toml_keys``), documented by the field itself
(``earlyprune.run.settings``); each problem is one ``SpecError`` line naming the table.
"""

from __future__ import annotations

import itertools
from dataclasses import fields
from typing import Any

from earlyprune.core.errors import SpecError
from earlyprune.methods.sparse_training import ablation_applies
from earlyprune.run.spec import DENSE, PRESETS, REWINDING, RunSpec, default_preset, paper_sparsities
from earlyprune.sweeps.executors.base import with_prerequisites

_OPTIONS = {"dense": bool}
_PRUNING_ABLATIONS = ("shuffle", "reinit", "invert")
_LIST_FIELDS = ("milestones",)  # fields whose one value is a list


def toml_keys() -> tuple[str, ...]:
    """The keys of ``[base]``, ``[axes]`` and ``[[include]]``: the ``RunSpec`` fields, in order."""
    return tuple(f.name for f in fields(RunSpec))


def grid_specs(
    base: dict[str, Any], axes: dict[str, Any], includes: list[dict[str, Any]], dense: bool
) -> tuple[list[RunSpec], int]:
    _check_fields("[base]", base)
    _check_fields("[axes]", axes)
    names = list(axes)
    values = [_axis_values(name, axes[name]) for name in names]
    for name, axis in zip(names, values, strict=True):
        for value in axis:
            _check_value("[axes]", name, value)
    combos = [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)]
    specs, skipped = [], 0
    for i, extra in enumerate([*combos, *includes]):
        where = f"[[include]] #{i - len(combos) + 1}" if i >= len(combos) else None
        if where:
            _check_fields(where, extra)
        fields_ = _with_defaults({**base, **extra})
        if fields_.get("method", DENSE) not in REWINDING:
            # A rewind step shared in [base] means nothing to the runs that do not rewind.
            fields_.pop("rewind_step", None)
        if fields_.get("method") == DENSE and (
            fields_.get("sparsity", 0) != 0 or fields_.get("ablation") in _PRUNING_ABLATIONS
        ):
            skipped += 1
            continue
        if not ablation_applies(fields_.get("method", DENSE), fields_.get("ablation", "none")):
            skipped += 1
            continue
        try:
            spec = RunSpec(**fields_)
            # One name for one dense training: the form the pipeline uses for prerequisites.
            specs.append(spec.dense_spec() if spec.method == DENSE else spec)
        except SpecError as exc:
            shown = ", ".join(f"{k}={v!r}" for k, v in extra.items())
            context = where or (f"the run {shown}" if shown else "[base]")
            raise SpecError(f"{exc} (in {context})") from None
    if dense:
        specs += [s.dense_spec() for s in specs if s.method != DENSE]
    return with_prerequisites(specs), skipped


def _with_defaults(f: dict[str, Any]) -> dict[str, Any]:
    """preset ← the dataset's default preset; model and dataset ← the preset's (as the CLI)."""
    f = dict(f)
    if "preset" not in f and "dataset" in f:
        if default_preset(f["dataset"]) is None:
            from earlyprune.data import list_datasets

            if f["dataset"] not in list_datasets():  # a typo: say so, not "set preset"
                raise SpecError(
                    f"unknown dataset {f['dataset']!r}; choose one of: {', '.join(list_datasets())}"
                )
            raise SpecError(
                f"no default preset for dataset {f['dataset']!r}: set preset "
                f"(one of: {', '.join(PRESETS.names())})"
            )
        f["preset"] = default_preset(f["dataset"])
    if "preset" in f:
        try:
            preset = PRESETS.get(f["preset"])
        except ValueError as exc:
            raise SpecError(str(exc)) from None
        f.setdefault("model", preset.model)
        f.setdefault("dataset", preset.dataset)
    return f


def _axis_values(name: str, value: Any) -> list[Any]:
    if name == "sparsity" and isinstance(value, dict):
        grid = value.get("paper_grid")
        if set(value) != {"paper_grid"} or not (
            isinstance(grid, list) and len(grid) == 2 and all(type(k) is int for k in grid)
        ):
            raise SpecError("sparsity axis: write a list of numbers or { paper_grid = [a, b] }")
        first, last = grid
        if not 1 <= first <= last:
            raise SpecError(
                f"sparsity paper_grid {grid}: need 1 ≤ a ≤ b (k = 0 is the dense run, "
                "added by options.dense)"
            )
        return paper_sparsities(first, last)
    if not isinstance(value, list):
        raise SpecError(f"axis {name!r} must be a list of values (a single value goes in [base])")
    if not value:
        raise SpecError(f"axis {name!r} is empty: give at least one value")
    return value


def _check_fields(where: str, table: dict[str, Any]) -> None:
    valid = toml_keys()
    unknown = [k for k in table if k not in valid]
    if unknown:
        raise SpecError(
            f"unknown run field(s) {', '.join(map(repr, unknown))} in {where}; "
            f"valid: {', '.join(valid)}"
        )
    if where != "[axes]":  # an axis is a list of values, checked one by one
        for key, value in table.items():
            _check_value(where, key, value)


def _check_value(where: str, key: str, value: Any) -> None:
    """One line for a table, or a list where one value belongs (``milestones`` is a list)."""
    items = value if key in _LIST_FIELDS and isinstance(value, list) else [value]
    for item in items:
        if isinstance(item, dict | list):
            kind = "table" if isinstance(item, dict) else "list"
            raise SpecError(f"{key} in {where} must be a single value, not a {kind}: {value!r}")


def table(doc: dict[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise SpecError(f"{key} must be a table ([{key}])")
    return value


def read_options(table: dict[str, Any]) -> dict[str, Any]:
    for key, value in table.items():
        if key not in _OPTIONS:
            raise SpecError(f"unknown option {key!r} in [options]; valid: {', '.join(_OPTIONS)}")
        if not isinstance(value, _OPTIONS[key]):
            raise SpecError(f"option {key} must be true or false, got {value!r}")
    return {"dense": table.get("dense", True)}
