"""RunStore: atomic writes, corrupt files set aside, claims (busy, dead owner, TTL), path safety."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest
import torch

from earlyprune.core.errors import StoreError
from earlyprune.run import claims as claims_module
from earlyprune.run import store as store_module
from earlyprune.run.store import ClaimBusy, RunStore

RID = "0123456789ab"


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "store")


def leftovers(store: RunStore) -> list[str]:
    """Temporary or hidden files anywhere in the store."""
    return [p.name for p in store.root.rglob("*") if p.name.startswith(".") or "tmp" in p.name]


def test_nothing_is_created_until_the_first_write(store):
    assert store.run_ids() == [] and store.read_result(RID) is None
    assert store.load_tensors(RID, "final.pt") is None and store.claim_state(RID) == "free"
    assert not store.root.exists()


def test_writes_round_trip_and_leave_no_temporary_files(store):
    store.write_json(RID, "result.json", {"run_id": RID, "status": "ok", "x": [1.5, None]})
    store.save_tensors(RID, "final.pt", {"w": torch.arange(6.0).reshape(2, 3)})
    store.write_json(RID, "result.json", {"run_id": RID, "status": "ok", "x": 2})  # overwrite
    store.append_metrics(RID, {"epoch": 1})
    assert store.read_result(RID) == {"run_id": RID, "status": "ok", "x": 2}
    assert torch.equal(store.load_tensors(RID, "final.pt")["w"], torch.arange(6.0).reshape(2, 3))
    assert sorted(os.listdir(store.run_dir(RID))) == ["final.pt", "metrics.jsonl", "result.json"]
    assert leftovers(store) == [] and store.run_ids() == [RID]


def test_a_write_that_fails_midway_keeps_the_old_file_and_no_temporary(store, monkeypatch):
    store.save_tensors(RID, "latest.pt", {"step": 1})

    def half_write(obj, f):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", half_write)
    with pytest.raises(StoreError, match="disk full"):
        store.save_tensors(RID, "latest.pt", {"step": 2})
    monkeypatch.undo()
    assert store.load_tensors(RID, "latest.pt") == {"step": 1}
    assert leftovers(store) == []


def test_truncated_result_is_set_aside_and_treated_as_absent(store):
    store.write_json(RID, "result.json", {"run_id": RID, "status": "ok", "test_accuracy": 0.5})
    p = store.path(RID, "result.json")
    p.write_text(p.read_text()[:20])  # a crash in another tool, a full disk...
    assert store.read_result(RID) is None
    assert not p.exists() and p.with_name("result.json.corrupt").exists()


def test_a_json_result_without_status_is_not_a_result(store):
    store.write_json(RID, "result.json", {"test_accuracy": 0.5})
    assert store.read_result(RID) is None
    assert store.path(RID, "result.json.corrupt").exists()


def test_truncated_checkpoint_is_set_aside_and_treated_as_absent(store):
    store.save_tensors(RID, "latest.pt", {"w": torch.randn(50, 50), "step": 3})
    p = store.path(RID, "latest.pt")
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    assert store.load_tensors(RID, "latest.pt") is None
    assert not p.exists() and p.with_name("latest.pt.corrupt").exists()


class Pickled:
    """Not a tensor: loading it would run arbitrary code in general."""


def test_checkpoints_never_unpickle_arbitrary_objects(store):
    store.run_dir(RID).mkdir(parents=True)
    torch.save({"x": Pickled()}, store.path(RID, "latest.pt"))
    assert store.load_tensors(RID, "latest.pt") is None


# ---- claims -------------------------------------------------------------------------------
def write_claim(store: RunStore, pid: int, host: str, age_s: float = 0.0) -> None:
    p = store.path(RID, "claim")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps({"pid": pid, "host": host, "time": time.time() - age_s}))
    if age_s:
        old = time.time() - age_s
        os.utime(p, (old, old))


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: the pid is free
    return proc.pid


def test_a_live_claim_is_exclusive_and_released_after(store):
    with store.claim(RID, wait=False):
        assert store.claim_state(RID) == "live"
        with pytest.raises(ClaimBusy), store.claim(RID, wait=False):
            pass
    assert store.claim_state(RID) == "free"
    with store.claim(RID, wait=False):  # free again
        pass


def test_a_claim_is_released_when_the_body_raises(store):
    with pytest.raises(KeyboardInterrupt), store.claim(RID, wait=False):
        raise KeyboardInterrupt
    assert store.claim_state(RID) == "free"


def test_a_claim_held_by_another_live_process_is_busy(store):
    write_claim(store, os.getppid(), socket.gethostname())
    assert store.claim_state(RID) == "live"
    with pytest.raises(ClaimBusy), store.claim(RID, wait=False):
        pass


def test_a_claim_by_a_dead_process_is_broken_at_once(store):
    write_claim(store, dead_pid(), socket.gethostname())
    assert store.claim_state(RID) == "stale"
    with store.claim(RID, wait=False):
        info = json.loads(store.path(RID, "claim").read_text())
        assert info["pid"] == os.getpid()
    assert leftovers(store) == []


def test_a_claim_older_than_the_ttl_is_broken(store):
    # Another host: its pid cannot be checked, only the heartbeat's age.
    write_claim(store, os.getpid(), "some-other-host", age_s=store_module.CLAIM_TTL_S + 5)
    assert store.claim_state(RID) == "stale"
    with store.claim(RID, wait=False):
        assert store.claim_state(RID) == "live"


def test_a_fresh_claim_from_another_host_is_respected(store):
    write_claim(store, dead_pid(), "some-other-host", age_s=1.0)
    assert store.claim_state(RID) == "live"
    with pytest.raises(ClaimBusy), store.claim(RID, wait=False):
        pass


def test_heartbeat_keeps_a_long_claim_alive(store, monkeypatch):
    monkeypatch.setattr(claims_module, "CLAIM_TTL_S", 0.5)
    write_claim(store, os.getpid(), "some-other-host", age_s=10.0)
    assert store.claim_state(RID) == "stale"
    store.heartbeat(RID)
    assert store.claim_state(RID) == "live"


def test_an_old_claim_of_a_live_process_on_this_host_is_never_stale(store):
    # The owner can be asked directly: a long epoch without heartbeat is not death.
    write_claim(store, os.getppid(), socket.gethostname(), age_s=store_module.CLAIM_TTL_S * 10)
    assert store.claim_state(RID) == "live"


def test_a_held_claim_beats_by_itself(store, monkeypatch):
    monkeypatch.setattr(claims_module, "CLAIM_TTL_S", 0.2)
    with store.claim(RID):
        p = store.path(RID, "claim")
        backdated = time.time() - 100
        os.utime(p, (backdated, backdated))
        for _ in range(250):  # the beat comes every CLAIM_TTL_S / 4 = 0.05 s
            if p.stat().st_mtime > backdated + 50:
                break
            time.sleep(0.02)
        refreshed = p.stat().st_mtime
        assert refreshed > backdated + 50


def test_waiting_claim_gets_the_run_once_it_is_freed(store):
    write_claim(store, dead_pid(), socket.gethostname())
    with store.claim(RID, wait=True, poll_s=0.01):
        assert store.claim_state(RID) == "live"


# ---- path safety --------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["../../etc", "0123456789aB", "0123456789a", "", "x" * 12, None])
def test_run_ids_are_validated(store, bad):
    with pytest.raises(StoreError, match="invalid run id"):
        store.run_dir(bad)


@pytest.mark.parametrize("bad", ["../result.json", "a/b", ".hidden", "", "x y"])
def test_file_names_cannot_escape_the_run_folder(store, bad):
    with pytest.raises(StoreError, match="invalid file name"):
        store.path(RID, bad)


def test_a_store_path_that_is_a_file_is_refused(tmp_path):
    f = tmp_path / "not-a-folder"
    f.write_text("hello")
    with pytest.raises(StoreError, match="not a folder"):
        RunStore(f)
    assert f.read_text() == "hello"


def test_run_ids_lists_only_run_folders(store):
    store.write_json(RID, "spec.json", {})
    (store.root / "report").mkdir()
    (store.root / "notes.txt").write_text("")
    assert store.run_ids() == [RID]
