"""One ``result.json`` turned into table rows: the run's row, its layers, collapse and curve.

A result that cannot be used raises :class:`Unusable` with the reason shown to the user; the
store reader (:mod:`earlyprune.analysis.load`) skips it and goes on.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from earlyprune.analysis.checks import method_label

STATUSES = ("ok", "disconnected", "diverged", "failed")
#: Statuses whose test accuracy is a real outcome: ``disconnected`` = the mask cuts every
#: input→output path and the network was trained anyway (chance accuracy, as the paper reports
#: for its inverted masks).
MEASURED = ("ok", "disconnected")
# Columns that come from the result rather than the spec (everything else in a row is a spec field).
RESULT_COLUMNS = (
    "run_id",
    "status",
    "error",
    "test_accuracy",
    "best_test_accuracy",
    "density",
    "effective_density",
    "flops",
    "flops_dense",
    "collapse_100",
)
LAYER_COLUMNS = ("run_id", "order", "layer", "density", "numel", "effective_density")
_REQUIRED_SPEC = ("model", "dataset", "method")
_FRACTIONS = ("test_accuracy", "best_test_accuracy", "density", "effective_density")


class Unusable(Exception):
    """A result file that is skipped, with the reason shown to the user."""


def read_json(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise Unusable(f"cannot be read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise Unusable(f"not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise Unusable("not a JSON object")
    return raw


def run_row(raw: dict[str, Any], default_id: str) -> dict[str, Any]:
    spec = raw.get("spec")
    if not isinstance(spec, dict):
        raise Unusable("has no 'spec' object")
    missing = [key for key in _REQUIRED_SPEC if spec.get(key) in (None, "")]
    if missing:
        raise Unusable(f"spec lacks {', '.join(missing)}")
    status = raw.get("status")
    if status not in STATUSES:
        raise Unusable(f"unknown status {status!r} (expected one of {', '.join(STATUSES)})")
    # Spec fields first, so that a spec field never shadows the result's own columns.
    row = _flatten(spec)
    row["method"] = method_label(spec)  # snip[alloc=erk] is not snip: its own group everywhere
    row["_hashed_method"] = method_label(spec, as_written=False)
    row["run_id"] = str(raw.get("run_id") or default_id)
    row["status"] = status
    row["error"] = raw.get("error")
    row["ablation"] = _ablation(spec)
    # Older or hand-written results may lack prune_step: they pruned at initialization.
    row["prune_step"] = _as_int(spec.get("prune_step"), "prune_step")
    row["sparsity"] = _sparsity(spec)
    for key in _FRACTIONS:
        row[key] = _fraction(raw.get(key), key)
    row["flops"], row["flops_dense"] = _flops(raw.get("flops"))
    # Which definition of the computation produced the numbers (results before versions: 1).
    row["numerics_version"] = _as_int(raw.get("numerics_version"), "numerics_version") or 1
    row["collapse_100"] = _collapse_at(raw.get("neuron_collapse"), 1.0)
    return row


def _ablation(spec: dict[str, Any]) -> str:
    """The run's ablation; a dense run initialized from N(0, 1) is the dense ``init_normal``.

    The ``init_normal`` ablation's runs start from their own dense network (``RunSpec.dense_spec``
    turns the ablation into ``init = "normal"``). Labelled ``none``, that network would be
    averaged with the He-initialized dense runs into one "dense" reference; as ``init_normal``
    it is the reference of exactly the runs that share its initialization.
    """
    ablation = spec.get("ablation") or "none"
    if spec.get("method") == "dense" and ablation == "none" and spec.get("init") == "normal":
        return "init_normal"
    return ablation


def _flops(flops: Any) -> tuple[float, float]:
    """(pruned, dense) multiply-adds per example, NaN where the result has no count."""
    if not isinstance(flops, dict):
        return math.nan, math.nan
    out = []
    for key in ("pruned", "dense"):
        value = flops.get(key)
        out.append(float(value) if isinstance(value, int | float) and value >= 0 else math.nan)
    return out[0], out[1]


def _flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts become ``outer.inner`` columns; lists become JSON text so they stay hashable."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        elif isinstance(value, list):
            flat[name] = json.dumps(value)
        else:
            flat[name] = value
    return flat


def _sparsity(spec: dict[str, Any]) -> float:
    value = spec.get("sparsity")
    if value is None and spec.get("method") == "dense":
        return 0.0
    sparsity = _fraction(value, "sparsity")
    if math.isnan(sparsity):
        raise Unusable("spec lacks sparsity")
    # Grid values such as 1 - 0.8**k come out of different code paths with different last bits.
    return round(sparsity, 9)


def _fraction(value: Any, name: str) -> float:
    if value is None:
        return math.nan
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise Unusable(f"{name} {value!r} is not a number") from None
    if not math.isnan(number) and not 0.0 <= number <= 1.0:
        raise Unusable(f"{name} {number} is not a fraction in [0, 1]")
    return number


def _as_int(value: Any, name: str) -> int:
    if value is None:
        return 0
    try:
        return int(value)
    except (TypeError, ValueError):
        raise Unusable(f"{name} {value!r} is not an integer") from None


def _collapse_at(collapse: Any, threshold: float) -> float:
    if isinstance(collapse, dict) and collapse.get("per_layer") == {}:
        return math.nan  # a network without conv channels: collapse is not defined (n/a)
    for t, share in _collapse_pairs(collapse):
        if math.isclose(t, threshold):
            return share
    return math.nan


def _collapse_pairs(collapse: Any) -> list[tuple[float, float]]:
    if not isinstance(collapse, dict):
        return []
    thresholds, overall = collapse.get("thresholds"), collapse.get("overall")
    if not isinstance(thresholds, list) or not isinstance(overall, list):
        return []
    pairs = []
    for t, share in zip(thresholds, overall, strict=False):
        try:
            pairs.append((float(t), float(share)))
        except (TypeError, ValueError):
            continue
    return pairs


def layer_rows(run_id: str, raw: dict[str, Any]) -> list[dict[str, Any]]:
    density, numel = raw.get("layer_density"), raw.get("layer_numel")
    if not isinstance(density, dict):
        return []
    numel = numel if isinstance(numel, dict) else {}
    effective = raw.get("layer_effective_density")
    effective = effective if isinstance(effective, dict) else {}
    return [
        {
            "run_id": run_id,
            "order": i,
            "layer": name,
            "density": d,
            "numel": numel.get(name),
            "effective_density": effective.get(name, math.nan),
        }
        for i, (name, d) in enumerate(density.items())
        if isinstance(d, int | float)
    ]


def collapse_rows(run_id: str, raw: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"run_id": run_id, "threshold": t, "share": share}
        for t, share in _collapse_pairs(raw.get("neuron_collapse"))
    ]


def curve_rows(run_id: str, raw: dict[str, Any]) -> list[dict[str, Any]]:
    curve = raw.get("curve")
    if not isinstance(curve, list):
        return []
    keys = ("epoch", "step", "lr", "train_loss", "test_accuracy")
    return [
        {"run_id": run_id, **{k: point.get(k) for k in keys}}
        for point in curve
        if isinstance(point, dict)
    ]


def column_order(columns: pd.Index) -> list[str]:
    head = ["run_id", "status", "error"]
    tail = list(RESULT_COLUMNS[3:])
    leading_spec = ["model", "dataset", "preset", "method", "sparsity", "prune_step", "ablation"]
    spec = [c for c in leading_spec if c in columns]
    spec += [c for c in columns if c not in head + tail + spec]
    return head + spec + tail
