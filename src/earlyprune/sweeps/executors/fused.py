"""``--fuse K``: a sweep's pending runs trained K at a time as fused packs (issue 23).

Which runs fuse: every run that may share a pack (``run.fused_packs``: not sparse training, not
IMP, one process) and is not a dense run. Dense runs stay solo: every pruned run names its dense
prerequisite and reference by that solo run's id, and the dense checkpoints at step t are kept
by it. A fused run has its own id (``engine = "fused"``), so a fused and a solo result never
share one. The solo runs go to the sweep's executor first (the dense prerequisites among them);
then the packs train one after another in this process, each on the runs' device.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Sequence
from typing import Any

from earlyprune.core.errors import SpecError
from earlyprune.run.environment import RunInterrupted
from earlyprune.run.fused_packs import fusable_alone, packs
from earlyprune.run.fused_run import BUSY, FUSED, run_pack
from earlyprune.run.logs import SweepProgress
from earlyprune.run.spec import DENSE, RunSpec
from earlyprune.run.store import RunStore
from earlyprune.sweeps.executors.base import register_methods


def check_fuse(k: object) -> int:
    """``k`` if it is a valid ``--fuse`` value; a one-line ``SpecError`` otherwise."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise SpecError(f"--fuse takes a positive whole number of runs per pack, got {k!r}")
    return k


def fused_specs(specs: Sequence[RunSpec], k: int | None) -> list[RunSpec]:
    """``specs`` with every run that may be fused made a fused run (``k`` None: unchanged)."""
    if k is None:
        return list(specs)
    check_fuse(k)
    return [
        s.replace(engine=FUSED) if s.method != DENSE and fusable_alone(s) is None else s
        for s in specs
    ]


def with_fuse(
    specs: Sequence[RunSpec], executor: Any, k: int | None, backend: object
) -> tuple[list[RunSpec], Any]:
    """The specs and executor of a sweep run with ``--fuse k`` (unchanged when ``k`` is None).

    Raises:
        SpecError: For a bad ``k``, or a backend other than "local" (packs train here).
    """
    if k is None:
        return list(specs), executor
    if backend != "local":
        raise SpecError("--fuse trains its packs on this machine: use it with --backend local")
    return fused_specs(specs, k), functools.partial(run_fused, k=k, solo_executor=executor)


def run_fused(
    specs: list[RunSpec],
    store: RunStore,
    k: int,
    solo_executor: Any,  # the sweep's executor for the runs that stay solo
    *,
    workers: int | None,
    data_root: str | None,
    retry_failed: bool,
    progress: SweepProgress,
    methods: Sequence[str],
) -> None:
    """Runs ``specs`` (all pending): solo ones through ``solo_executor``, fused ones in packs.

    A member another sweep holds drops out of its pack and is waited for at the end (then
    served: it is never trained twice).
    """
    solo = [s for s in specs if s.engine != FUSED]
    if solo:
        solo_executor(
            solo,
            store,
            workers=workers,
            data_root=data_root,
            retry_failed=retry_failed,
            progress=progress,
            methods=methods,
        )
    register_methods(methods)
    busy = []
    for pack in packs([s for s in specs if s.engine == FUSED], k):
        outcome = _pack(pack, store, data_root, retry_failed, wait=False)
        for spec in pack:
            if outcome.get(spec.run_id) == BUSY:
                busy.append(spec)
            else:
                progress.done(spec)
    for spec in busy:
        _pack([spec], store, data_root, retry_failed, wait=True)
        progress.done(spec)


def _pack(
    pack: list[RunSpec], store: RunStore, data_root: str | None, retry_failed: bool, wait: bool
) -> dict[str, str]:
    try:
        return run_pack(pack, store, data_root=data_root, retry_failed=retry_failed, wait=wait)
    except RunInterrupted as exc:  # out of memory...: left resumable, the sweep goes on
        print(f"earlyprune: {exc}; left to resume", file=sys.stderr)
        return {}
