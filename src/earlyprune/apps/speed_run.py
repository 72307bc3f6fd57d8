"""``earlyprune speed RUN``: the measured speed of a stored run's network, written beside it.

The run's own trained weights, mask and structure (``spec.json``, ``final.pt``, ``mask.pt``)
go through :func:`earlyprune.apps.speed.measure_speed`; the result is ``speed.json`` in the run's
folder, written atomically by the store, where ``earlyprune report`` finds it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from earlyprune.apps.speed import format_result, measure_speed
from earlyprune.core.errors import StoreError

SPEED_FILE = "speed.json"


def locate(run: str, store: str | None) -> tuple[Path, str]:
    """``(store root, run id)`` of a run folder, or of a run id in ``store`` (default ``runs``)."""
    folder = Path(run).expanduser()
    if (folder / "spec.json").is_file():
        return folder.resolve().parent, folder.resolve().name
    root = Path(store or "runs").expanduser()
    if (root / run / "spec.json").is_file():
        return root, run
    raise StoreError(
        f"no run {run!r}: give a run folder (holding spec.json) or a run id in --store "
        f"(now {str(root)!r})"
    )


def speed_of_run(
    run: str, store: str | None, device: str = "cpu", batch_size: int = 32, repeats: int = 10
) -> tuple[dict[str, Any], Path]:
    """Measures a finished run's network and writes ``speed.json``; returns (result, its path).

    Raises:
        StoreError: no such run, or it has no trained network (not finished, or failed).
        ValueError: its structure has no real kernel (``nm:N:M`` other than 2:4).
    """
    from earlyprune.run.spec import RunSpec
    from earlyprune.run.stages import fresh_model, prepare
    from earlyprune.run.store import RunStore

    root, run_id = locate(run, store)
    runs = RunStore(root)
    spec = RunSpec.from_dict(runs.read_json(run_id, "spec.json"))
    final, mask = runs.load_tensors(run_id, "final.pt"), runs.load_tensors(run_id, "mask.pt")
    if final is None or mask is None:
        raise StoreError(f"run {run_id} has no trained pruned network (final.pt and mask.pt)")
    setup = prepare(spec.replace(device="cpu"))
    model = fresh_model(setup)
    model.load_state_dict(final["model"])
    result = measure_speed(
        model, mask, spec.structure, setup.bundle.input_shape, device, batch_size, repeats
    )
    result["run_id"] = run_id
    runs.write_json(run_id, SPEED_FILE, result)
    return result, runs.path(run_id, SPEED_FILE)


def cli_speed(args: argparse.Namespace) -> int:
    """``earlyprune speed``: prints ``speedup S×`` and whether the outputs are equal."""
    result, path = speed_of_run(args.run, args.store, args.device, args.batch_size, args.repeats)
    print(format_result(result))
    print(f"written: {path}")
    return 0
