"""The numerics version: which definition of the computation produced a stored result.

A run id hashes *what was asked* (the spec), not *how it was computed*. When a fix changes the
numbers every spec produces (a scorer, the initialization, the training loop), results stored
before it would otherwise be served as if they were today's. So every ``result.json`` records
``numerics_version``, every run folder holds a marker (``numerics.json``) saying which version
wrote its checkpoints, and:

* a stored result of another version (or of none: stores made before versions existed) is never
  served: :func:`check_current` raises one line saying what to do (``--recompute-stale``, or a
  new ``--store``);
* checkpoints of an unfinished run, or a dense run's shared step-t and final weights, are used
  only when their folder's marker is current; :func:`adopt` clears a stale folder before a run
  starts in it;
* :func:`forget_stale` sets stale results aside so that their runs are computed again.

Bump :data:`NUMERICS_VERSION` (and add a line to :data:`HISTORY`) with any change that alters
the numbers an existing spec produces.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

from earlyprune.core.errors import SpecError
from earlyprune.run.store import ClaimBusy, RunStore

#: The current numerics version (results without one are version 1).
NUMERICS_VERSION = 3

#: What each version changed (shown in the stale-result message).
HISTORY = {
    1: "the first releases",
    2: "independent random streams per purpose, PyTorch's default bias init, VGG conv biases, "
    "SynFlow |.| of parameters only",
    3: "SynFlow-L2, PHEW and NTK-SAP as the authors' code (SynFlow-L2 scores |theta| * dR/d(theta^2); "
    "PHEW walks start at the first layer's input units; NTK-SAP resamples keep the biases, gamma 1)",
}

MARKER = "numerics.json"
#: The name a stale result is kept under once it is set aside (for the record; never read).
STALE_RESULT = "result.stale.json"
_KEEP = ("claim",)


def version_of(record: dict[str, Any] | None) -> int:
    """The numerics version a result (or marker) was computed under; 1 when it says none."""
    if not isinstance(record, dict):
        return 1
    v = record.get("numerics_version", 1)
    return v if isinstance(v, int) and not isinstance(v, bool) else 1


def is_current(record: dict[str, Any] | None) -> bool:
    return version_of(record) == NUMERICS_VERSION


def stale_message(run_ids: list[str], version: int, store: RunStore) -> str:
    """One line: which stored runs are stale and the two ways on."""
    what = f"run {run_ids[0]}" if len(run_ids) == 1 else f"{len(run_ids)} runs (e.g. {run_ids[0]})"
    return (
        f"{what} in {store.root} was computed by an older earlyprune (numerics version "
        f"{version}; this is version {NUMERICS_VERSION}: {HISTORY[NUMERICS_VERSION]}), so its "
        "numbers are not today's; add --recompute-stale to redo it in this store, or use a new "
        "--store"
    )


def check_current(result: dict[str, Any], store: RunStore) -> dict[str, Any]:
    """Returns ``result`` if it was computed under today's numerics; else raises ``SpecError``."""
    if not is_current(result):
        raise SpecError(stale_message([str(result.get("run_id"))], version_of(result), store))
    return result


def check_all_current(results: Iterable[dict[str, Any] | None], store: RunStore) -> None:
    """Raises one ``SpecError`` naming how many of the stored ``results`` are stale."""
    stale = [r for r in results if r is not None and not is_current(r)]
    if stale:
        ids = sorted(str(r.get("run_id")) for r in stale)
        raise SpecError(stale_message(ids, version_of(stale[0]), store))


def adopt(store: RunStore, run_id: str) -> None:
    """Makes a run folder current before a run starts (or resumes) in it; hold its claim.

    A folder whose marker is missing or of another version holds checkpoints, a mask and
    metrics computed under other numerics: they are deleted (never resumed from) and the
    marker is written. A stale ``result.json`` is set aside as ``result.stale.json``.
    """
    result = store.read_result(run_id)
    if is_current(store.read_json(run_id, MARKER)) and (result is None or is_current(result)):
        return
    folder = store.run_dir(run_id)
    if folder.is_dir():
        for p in sorted(folder.iterdir()):
            if p.name in _KEEP or p.name.startswith(".") or not p.is_file():
                continue
            if p.name == "result.json":
                with contextlib.suppress(OSError):
                    p.replace(p.with_name(STALE_RESULT))
            elif p.name != STALE_RESULT:
                store.delete(run_id, p.name)
    store.write_json(run_id, MARKER, {"numerics_version": NUMERICS_VERSION})


def forget_stale(store: RunStore, run_ids: Iterable[str]) -> int:
    """Sets aside every stale stored result among ``run_ids`` (with its checkpoints) so that the
    run is computed again; returns how many. Runs another worker holds are left alone."""
    n = 0
    for rid in dict.fromkeys(run_ids):
        result = store.read_result(rid)
        if result is None or is_current(result):
            continue
        try:
            with store.claim(rid, wait=False):
                if not is_current(store.read_result(rid)):
                    adopt(store, rid)
                    n += 1
        except ClaimBusy:
            continue
    return n
