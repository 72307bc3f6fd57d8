"""Fault injection on whole sweeps: SIGKILL at chosen and random moments, files damaged by a
crash, workers that die holding claims, two sweeps on one store, full and read-only disks, NaN.

Every sweep is one tiny grid (the demo network on the embedded data, 1.5 epochs, so each run
writes a mid-run checkpoint): a dense run, SNIP, magnitude after training (needs the dense
``final.pt``) and random pruning at step 5 (a dense step that is replayed, not kept). The
uninterrupted sweep is the reference: whatever happens, ``earlyprune report`` must end with the
same results.csv (run id, spec fields, status, test accuracy, density). Training runs on the
CPU, where it is deterministic for a given thread count, and every process here trains on one
thread (as each worker of `--workers 2` on two cores does), so the comparison is exact.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import torch

import earlyprune.run.claims as claims_module
import earlyprune.run.store as store_module
from earlyprune import cli
from earlyprune.run.spec import PRESETS, RunSpec
from earlyprune.run.stages import prepare
from earlyprune.run.store import RunStore
from earlyprune.sweeps.grid import load_sweep, run_specs

EPOCHS = 1.5
GRID = f"""
[base]
dataset = "fashion-mnist-mini"
epochs = {EPOCHS}
device = "cpu"
[axes]
method = ["snip", "magnitude_after_training"]
sparsity = [0.9]
[[include]]
method = "random"
sparsity = 0.5
prune_step = 5
"""
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
CPUS = sorted(os.sched_getaffinity(0))
# Runs `earlyprune ARGS` in-process and SIGKILLs itself at one moment. HOOK: "none", "step:N"
# (after the N-th optimizer step), "write:NAME:N" (half-way through the N-th atomic write of the
# store file NAME) or "after:NAME:N" (just after that write is complete). No product hooks.
DRIVER = """
import os, signal, sys
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook
from earlyprune import cli
from earlyprune.run.store import RunStore

hook, argv = sys.argv[1], sys.argv[2:]
kind, _, rest = hook.partition(":")
name, _, nth = rest.rpartition(":")
seen = [0]

def due():
    seen[0] += 1
    return seen[0] == int(nth)

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def after_step(optimizer, args, kwargs):
    if due():
        die()

if kind == "step":
    register_optimizer_step_post_hook(after_step)
elif kind in ("write", "after"):
    atomic = RunStore._atomic

    def killing_atomic(self, target, write):
        if target.name != name or not due():
            return atomic(self, target, write)
        if kind == "after":
            atomic(self, target, write)
            die()

        def half(tmp):
            write(tmp)
            data = tmp.read_bytes()
            tmp.write_bytes(data[: len(data) // 2])
            die()

        return atomic(self, target, half)

    RunStore._atomic = killing_atomic
torch.set_num_threads(1)
sys.exit(cli.main(argv))
"""


@pytest.fixture(scope="module", autouse=True)
def one_core():
    """Every run of this module on one thread, as each worker of `--workers 2` on two cores.

    Thread counts change CPU results in the last bits, so every process gets its cores
    explicitly: this one and the drivers one core, `--workers 2` sweeps two (``cores(2)``).
    """
    threads = torch.get_num_threads()
    os.sched_setaffinity(0, CPUS[:1])
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    os.sched_setaffinity(0, CPUS)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The grid file, the driver script and the reference (uninterrupted) store."""
    folder = tmp_path_factory.mktemp("faults")
    toml, driver = folder / "grid.toml", folder / "driver.py"
    toml.write_text(GRID, encoding="utf-8")
    driver.write_text(DRIVER, encoding="utf-8")
    results = run_specs(load_sweep(toml).specs, RunStore(folder / "reference"), workers=1)
    assert [r["status"] for r in results] == ["ok"] * 4
    return {"toml": toml, "driver": driver, "reference": folder / "reference"}


def run_ids(toml: Path) -> list[str]:
    return [s.run_id for s in load_sweep(toml).specs]


def report(store: Path) -> pd.DataFrame:
    """results.csv of `earlyprune report`, deterministic columns only."""
    out = store.with_name(store.name + "-report")
    assert cli.main(["report", str(store), "--out", str(out)]) == 0
    df = pd.read_csv(out / "results.csv")
    spec = [f.name for f in dataclasses.fields(RunSpec) if f.name in df.columns]
    return df[["run_id", *spec, "status", "test_accuracy", "density"]]


def assert_same_report(store: Path, reference: Path) -> None:
    got, want = report(store), report(reference)
    assert len(want) == 4 and set(want["status"]) == {"ok"}
    pd.testing.assert_frame_equal(got, want)


def litter(store: Path) -> list[str]:
    return sorted(p.name for p in store.rglob(".*") if p.is_file())


def assert_no_live_claims(store: Path, ids: list[str]) -> None:
    assert [rid for rid in ids if RunStore(store).claim_state(rid) == "live"] == []


def copy_reference(files: dict[str, Path], dst: Path, drop: list[str]) -> Path:
    shutil.copytree(files["reference"], dst)
    for rid in drop:
        shutil.rmtree(dst / rid)
    return dst


def sweep(files: dict[str, Path], store: Path, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "earlyprune.cli",
        "sweep",
        "run",
        str(files["toml"]),
        "--store",
        str(store),
        "--workers",
        str(workers),
    ]


def cores(n: int, first: int = 0) -> Callable[[], None]:
    """For ``preexec_fn``: the child process may use ``n`` cores, from the ``first``-th on."""
    chosen = CPUS[first : first + n] or CPUS[:1]
    return lambda: os.sched_setaffinity(0, chosen)


def sweep_here(files: dict[str, Path], store: Path) -> int:
    """`earlyprune sweep run` in this process (one worker, so monkeypatches apply)."""
    return cli.main(["sweep", "run", str(files["toml"]), "--store", str(store), "--workers", "1"])


def claim_owners(store: Path, since: float = 0.0) -> dict[str, str]:
    """Run id → owner pid of the claims now in the store (taken after ``since``)."""
    owners = {}
    for claim in store.glob("*/claim"):
        try:  # claims come and go while we look
            if claim.stat().st_mtime >= since:
                owners[claim.parent.name] = claim.read_text().split('"pid": ')[-1].split(",")[0]
        except FileNotFoundError:
            continue
    return owners


def results(store: Path) -> dict[str, tuple[int, bytes]]:
    """Each stored result.json: (inode, content). A run done again would replace the file."""
    return {p.parent.name: (p.stat().st_ino, p.read_bytes()) for p in store.glob("*/result.json")}


# ---- SIGKILL -----------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigkill_at_many_moments_then_resume_gives_the_uninterrupted_report(
    files: dict[str, Path], tmp_path: Path
) -> None:
    setup = prepare(RunSpec(epochs=EPOCHS))
    spe, total = setup.sched.steps_per_epoch, setup.sched.total_steps
    assert 5 < spe < total < 2 * spe  # one mid-run checkpoint per run (at the end of epoch 1)
    rng = random.Random(20260503)
    # Each kill resumes the previous one's work, in sweep order: the dense run first, then SNIP.
    moments = [
        f"step:{rng.randint(spe + 1, total - 1)}",  # dense, epoch 2: resumes from latest.pt
        "write:latest.pt:1",  # dense: its end-of-training checkpoint, half written
        "write:final.pt:1",
        "write:result.json:1",  # dense: the result, half written
        "after:result.json:1",  # dense is done; its claim and latest.pt are left behind
        "write:mask.pt:1",  # SNIP's mask
        f"step:{rng.randint(1, total)}",  # SNIP's retraining
    ]
    store, seen = tmp_path / "store", {}
    for hook in moments:
        argv = [sys.executable, str(files["driver"]), hook, *sweep(files, store, 1)[3:]]
        proc = subprocess.run(
            argv, env=ENV, capture_output=True, text=True, timeout=120, preexec_fn=cores(1)
        )
        assert proc.returncode == -signal.SIGKILL, (hook, proc.stderr)
        if hook.startswith("write:"):  # the half-written file is there, under a temporary name
            assert any(f".{hook.split(':')[1]}." in name for name in litter(store)), hook
        now = results(store)
        assert {rid: now[rid] for rid in seen} == seen, hook  # a finished run is never redone
        seen = now
    # A kill at a random instant of the real command with two worker processes.
    started = time.time()
    proc = subprocess.Popen(
        sweep(files, store, 2),
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=cores(2),
    )
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if claim_owners(store, since=started):
            break
        time.sleep(0.01)
    time.sleep(rng.uniform(0.0, 1.5))
    proc.kill()
    proc.wait()
    assert {rid: results(store)[rid] for rid in seen} == seen
    final = subprocess.run(
        sweep(files, store, 2),
        env=ENV,
        capture_output=True,
        text=True,
        timeout=180,
        preexec_fn=cores(2),
    )
    assert final.returncode == 0, final.stderr
    assert final.stdout.strip().endswith(
        "4 done (4 ok, 0 diverged), 0 failed, 0 running, 0 pending"
    )
    assert {rid: results(store)[rid] for rid in seen} == seen
    assert litter(store) == []  # the half-written temporaries were never taken for files
    assert not list(store.rglob("*.corrupt"))  # and no file was ever found torn
    assert_no_live_claims(store, run_ids(files["toml"]))
    assert_same_report(store, files["reference"])


@pytest.mark.slow
def test_truncated_checkpoints_and_half_written_results_are_set_aside_and_redone(
    files: dict[str, Path], tmp_path: Path
) -> None:
    dense, snip, mat, rand = run_ids(files["toml"])
    store = copy_reference(files, tmp_path / "store", [])
    ref = files["reference"]

    def cut(rid: str, name: str, source: Path | None = None) -> None:
        data = (source or store / rid / name).read_bytes()
        (store / rid / name).write_bytes(data[: len(data) // 2])

    cut(dense, "final.pt")  # magnitude after training needs it: replayed from a kept step
    cut(dense, "step_5.pt")  # random at step 5 needs it: replayed from step 0
    cut(snip, "result.json")
    cut(snip, "latest.pt", source=ref / dense / "step_5.pt")  # a real checkpoint, truncated
    (store / mat / "result.json").unlink()
    cut(mat, "mask.pt")
    cut(rand, "result.json")
    dense_result = (store / dense / "result.json").read_bytes()
    results_ = run_specs(load_sweep(files["toml"]).specs, RunStore(store), workers=1)
    assert [r["status"] for r in results_] == ["ok"] * 4
    corrupt = sorted(str(p.relative_to(store)) for p in store.glob("*/*.corrupt"))
    assert corrupt == sorted(
        f"{rid}/{name}.corrupt"
        for rid, name in [
            (dense, "final.pt"),
            (dense, "step_5.pt"),
            (snip, "result.json"),
            (snip, "latest.pt"),
            (mat, "mask.pt"),
            (rand, "result.json"),
        ]
    )
    assert (store / dense / "result.json").read_bytes() == dense_result  # not redone
    for rid, name in [(dense, "final.pt"), (dense, "step_5.pt"), (mat, "mask.pt")]:
        a, b = RunStore(store).load_tensors(rid, name), RunStore(ref).load_tensors(rid, name)
        a, b = a.get("model", a), b.get("model", b)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), (rid, name)
    assert_same_report(store, ref)


@pytest.mark.slow
@pytest.mark.skipif(len(CPUS) < 2, reason="needs two cores")
def test_a_resumed_sweep_with_one_run_left_gives_the_uninterrupted_numbers(
    files: dict[str, Path], tmp_path: Path
) -> None:
    snip = run_ids(files["toml"])[1]
    store = copy_reference(files, tmp_path / "store", [snip])
    user_env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    proc = subprocess.run(
        sweep(files, store, 2),
        env=user_env,
        capture_output=True,
        text=True,
        timeout=180,
        preexec_fn=cores(2),
    )
    assert proc.returncode == 0, proc.stderr
    got, want = (
        json.loads((s / snip / "result.json").read_text()) for s in (store, files["reference"])
    )
    assert got["curve"] == want["curve"]  # the reference: a pool of 2 workers, 1 thread each


# ---- claims of dead workers; two sweeps at once -----------------------------------------------
def plant_claim(store: Path, rid: str, **info: object) -> None:
    """A claim as a worker writes it, its heartbeat fresh (written now)."""
    p = store / rid / "claim"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps({**info, "time": time.time()}))


def _reaped_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait()  # reaped: the pid is free
    return proc.pid


def run_in_thread(specs: list[RunSpec], store: RunStore, limit_s: float) -> None:
    """run_specs, failing (not hanging) if it waits for a claim that never expires."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            run_specs(specs, store, workers=1)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(limit_s)
    assert not thread.is_alive(), "the sweep still waits for the dead worker's claim"
    assert errors == []


OWNERS = {
    # A node that died: its heartbeat stops and the TTL runs out.
    "other host": {"pid": 4242, "host": "node-17.cluster"},
    # A container with host networking: same host name, but its pids mean nothing here.
    "other container": {"host": socket.gethostname(), "pidns": "pid:[1]"},
    # A restarted container: the owner's pid now belongs to another live process.
    "reused pid": {"pid": os.getpid(), "host": socket.gethostname(), "start": "1"},
}


@pytest.mark.slow
@pytest.mark.parametrize("owner", OWNERS)
def test_a_claim_of_a_dead_worker_expires_and_the_run_is_finished(
    files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, owner: str
) -> None:
    ids = run_ids(files["toml"])
    store = copy_reference(files, tmp_path / "store", [ids[1]])
    monkeypatch.setattr(claims_module, "CLAIM_TTL_S", 1.0)  # claims live there
    plant_claim(store, ids[1], **{"pid": _reaped_pid(), **OWNERS[owner]})
    if owner != "reused pid":  # its heartbeat is fresh: it must be waited for, then taken over
        assert RunStore(store).claim_state(ids[1]) == "live"
    run_in_thread(load_sweep(files["toml"]).specs, RunStore(store), limit_s=60)
    assert not (store / ids[1] / "claim").exists()
    assert_same_report(store, files["reference"])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_sweeps_on_one_store_one_killed_holding_a_claim(
    files: dict[str, Path], tmp_path: Path
) -> None:
    store = tmp_path / "store"
    a = subprocess.Popen(
        sweep(files, store, 1),
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=cores(1, 0),
    )
    while a.poll() is None and not list(store.glob("*/claim")):
        time.sleep(0.01)
    b = subprocess.Popen(
        sweep(files, store, 1),
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=cores(1, 1),
    )
    held = []
    while a.poll() is None and b.poll() is None:  # both hold a claim: kill the first one
        owners = claim_owners(store)
        if {str(a.pid), str(b.pid)} <= set(owners.values()):
            held = [rid for rid, pid in owners.items() if pid == str(a.pid)]
            a.kill()
            break
        time.sleep(0.01)
    a.wait()
    try:
        out, err = b.communicate(timeout=120)
    finally:
        b.kill()  # only if it hangs (then the test fails): never leave it running
    assert held, "the two sweeps never ran at the same time"
    assert b.returncode == 0, err
    assert out.strip().endswith("4 done (4 ok, 0 diverged), 0 failed, 0 running, 0 pending")
    for rid in run_ids(files["toml"]):  # an epoch done twice would be logged twice
        steps = [
            line.split('"step": ')[1].split(",")[0]
            for line in (store / rid / "metrics.jsonl").read_text().splitlines()
        ]
        assert len(steps) == len(set(steps)), rid
    assert litter(store) == [] and not list(store.rglob("*.corrupt"))
    assert_same_report(store, files["reference"])


# ---- full or read-only disk; NaN ----------------------------------------------------------------
class _FullDisk:
    """A file on a disk with ``room`` bytes left: the write that does not fit fails (ENOSPC)."""

    def __init__(self, f, room: int) -> None:  # type: ignore[no-untyped-def]
        self.f, self.room = f, room

    def write(self, data) -> int:  # type: ignore[no-untyped-def]
        if len(data) > self.room:
            self.f.write(data[: self.room])
            self.room = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.f.write(data)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.f, name)

    def __enter__(self) -> _FullDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.f.close()


def fill_disk(monkeypatch: pytest.MonkeyPatch, large_only: bool) -> None:
    """No room left in the store; ``large_only``: room for JSON files and claims, and for the
    first 4 kB of a checkpoint (torch's zip writer then fails in mid-file, not at its start)."""

    def full_open(path, mode="r", *args, **kwargs):  # type: ignore[no-untyped-def]
        f = open(path, mode, *args, **kwargs)
        if "r" in mode or (large_only and ".json" in str(path)):
            return f
        return _FullDisk(f, 4096 if large_only else 0)

    monkeypatch.setattr(store_module, "open", full_open, raising=False)
    if not large_only:  # claims are written through a file descriptor (O_EXCL)
        fdopen = os.fdopen
        monkeypatch.setattr(os, "fdopen", lambda fd, mode="r": _FullDisk(fdopen(fd, mode), 0))


def snapshot(store: Path) -> dict[str, bytes]:
    return {str(p.relative_to(store)): p.read_bytes() for p in store.rglob("*") if p.is_file()}


@pytest.mark.parametrize("large_only", [False, True], ids=["disk full", "disk filling up"])
def test_a_full_disk_names_the_path_and_damages_nothing(
    files: dict[str, Path], tmp_path: Path, monkeypatch, capsys, large_only: bool
) -> None:
    ids = run_ids(files["toml"])
    store = copy_reference(files, tmp_path / "store", [ids[1], ids[3]])
    before = snapshot(store)
    fill_disk(monkeypatch, large_only)
    code = sweep_here(files, store)
    out, err = capsys.readouterr()
    assert code in (1, 2) and "Traceback" not in out + err
    assert f"cannot write {store / ids[1]}/" in out + err and ": disk full" in out + err
    after = snapshot(store)
    assert {k: after[k] for k in before} == before  # nothing already stored is damaged
    assert litter(store) == [] and not list(store.glob("*/claim"))
    if not large_only:
        assert code == 2 and err.count("\n") == 1 and err.startswith("earlyprune: error: ")


def test_a_disk_filling_up_stops_the_sweep_and_records_no_failure(
    files: dict[str, Path], tmp_path: Path, monkeypatch, capsys
) -> None:
    ids = run_ids(files["toml"])
    store = copy_reference(files, tmp_path / "store", [ids[1], ids[3]])
    fill_disk(monkeypatch, large_only=True)
    code = sweep_here(files, store)
    err = capsys.readouterr().err
    # Freeing space and running the same command again must just go on: no "failed" to retry.
    assert code == 2 and err.count("\n") == 1 and "disk full" in err
    assert not (store / ids[1] / "result.json").exists()


def test_a_read_only_store_names_the_path_and_damages_nothing(
    files: dict[str, Path], tmp_path: Path, monkeypatch, capsys
) -> None:
    ids = run_ids(files["toml"])
    store = copy_reference(files, tmp_path / "store", [ids[1]])
    before = snapshot(store)
    if os.geteuid() != 0:  # a real read-only folder
        for d in [store, *(p for p in store.iterdir() if p.is_dir())]:
            d.chmod(0o555)
    else:  # root writes anywhere: refuse writes into the store as the OS would

        def refusing_open(path, flags, mode=0o777, *, dir_fd=None):  # type: ignore[no-untyped-def]
            if str(path).startswith(str(store)) and flags & (os.O_WRONLY | os.O_RDWR):
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real_open(path, flags, mode, dir_fd=dir_fd)

        real_open = os.open
        monkeypatch.setattr(os, "open", refusing_open)
    try:
        code = sweep_here(files, store)
    finally:
        for d in [store, *(p for p in store.iterdir() if p.is_dir())]:
            d.chmod(0o755)
    monkeypatch.undo()
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert (
        err.startswith(f"earlyprune: error: cannot write {store / ids[1]}") and "permission" in err
    )
    assert snapshot(store) == before


def test_a_nan_loss_is_recorded_diverged_and_the_sweep_goes_on(tmp_path: Path, capsys) -> None:
    demo = PRESETS.get("demo")
    PRESETS.add("test_faults_nan", dataclasses.replace(demo, name="test_faults_nan", lr=1e8))
    toml = tmp_path / "nan.toml"
    toml.write_text(
        '[base]\ndataset = "fashion-mnist-mini"\nepochs = 0.25\nmethod = "random"\n'
        'sparsity = 0.5\n[axes]\npreset = ["test_faults_nan", "demo"]\n'
    )
    store = tmp_path / "store"
    try:
        code = cli.main(["sweep", "run", str(toml), "--store", str(store), "--workers", "1"])
    finally:
        PRESETS.remove("test_faults_nan")
    out = capsys.readouterr().out
    assert code == 0
    assert out.strip().endswith("4 done (2 ok, 2 diverged), 0 failed, 0 running, 0 pending")
    assert cli.main(["report", str(store)]) == 0
    df = pd.read_csv(store / "report" / "results.csv")
    assert sorted(zip(df["preset"], df["status"], strict=True)) == [
        ("demo", "ok"),
        ("demo", "ok"),
        ("test_faults_nan", "diverged"),
        ("test_faults_nan", "diverged"),
    ]
    assert df[df["status"] == "diverged"]["test_accuracy"].isna().all()
    assert "(2 ok, 2 diverged, 0 failed)" in (store / "report" / "index.html").read_text()
