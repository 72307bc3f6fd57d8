"""Finished runs can be verified (issue 12, item 7).

``result.json`` records size and SHA-256 of every file the run wrote; a damaged finished run is
never served (``run`` and ``sweep run`` redo it), ``earlyprune verify`` lists it (exit 1) and
``--repair`` re-queues it; ``sweep status`` changes nothing in the store.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from earlyprune import cli
from earlyprune.run.pipeline import run
from earlyprune.run.spec import RunSpec
from earlyprune.run.store import RunStore

SPEC = RunSpec(method="snip", sparsity=0.9, epochs=0.25)
SWEEP = (
    '[base]\ndataset = "fashion-mnist-mini"\nepochs = 0.25\nmethod = "snip"\nsparsity = 0.9\n'
    "[options]\ndense = false\n"
)


def snapshot(folder: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(folder.rglob("*"))
    }


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: only the hash can tell
    path.write_bytes(bytes(data))


def verify(store: Path, capsys, *extra: str) -> tuple[int, str]:
    code = cli.main(["verify", str(store), *extra])
    return code, capsys.readouterr().out


def test_result_records_every_artifact_and_verify_finds_damage(tmp_path, capsys):
    store = tmp_path / "s"
    first = run(SPEC, RunStore(store), progress=False)
    folder = store / SPEC.run_id
    recorded = first["artifacts"]
    assert set(recorded) == {"final.pt", "mask.pt", "metrics.jsonl", "numerics.json", "spec.json"}
    for name, entry in recorded.items():  # independently: hashlib over the file's bytes
        data = (folder / name).read_bytes()
        assert entry == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert verify(store, capsys) == (0, f"1 finished runs in {store}: 0 damaged\n")

    flip_a_byte(folder / "final.pt")
    before = snapshot(store)
    code, out = verify(store, capsys)
    assert code == 1 and f"damaged: {SPEC.run_id}  final.pt content differs" in out
    assert snapshot(store) == before  # verify alone changes nothing

    code, out = verify(store, capsys, "--repair")
    assert code == 1 and "re-queued" in out
    assert not (folder / "result.json").exists() and (folder / "final.pt.corrupt").exists()
    again = run(SPEC, RunStore(store), progress=False)  # redone, and bit-identical
    assert again["curve"] == first["curve"] and again["artifacts"] == first["artifacts"]
    assert verify(store, capsys)[0] == 0


def test_run_never_serves_a_damaged_run(tmp_path):
    store = RunStore(tmp_path / "s")
    first = run(SPEC, store, progress=False)
    mask_file = tmp_path / "s" / SPEC.run_id / "mask.pt"
    mask = torch.load(mask_file, weights_only=True)
    torch.save({n: ~m for n, m in mask.items()}, mask_file)  # loads fine, but not this run's
    again = run(SPEC, store, progress=False)
    assert again["created"] >= first["created"] and again["curve"] == first["curve"]
    redone = torch.load(mask_file, weights_only=True)
    assert all(torch.equal(redone[n], mask[n]) for n in mask)
    assert again["artifacts"]["mask.pt"] == first["artifacts"]["mask.pt"]


def test_sweep_status_is_read_only_and_sweep_run_redoes_damaged_runs(tmp_path, capsys):
    (tmp_path / "sweep.toml").write_text(SWEEP, encoding="utf-8")
    store = tmp_path / "s"
    argv = ["sweep", "{}", str(tmp_path / "sweep.toml"), "--store", str(store), "--workers", "1"]
    status = [a.format("status") for a in argv]
    assert cli.main([a.format("run") for a in argv]) == 0
    folder = store / SPEC.run_id
    result = json.loads((folder / "result.json").read_text())
    flip_a_byte(folder / "final.pt")
    (folder / "metrics.jsonl").write_text("{half a line")  # unreadable too: still not renamed
    capsys.readouterr()
    before = snapshot(store)
    assert cli.main(status) == 0
    assert "1 damaged (see `earlyprune verify`)" in capsys.readouterr().out
    assert snapshot(store) == before

    assert cli.main([a.format("run") for a in argv]) == 0
    redone = json.loads((folder / "result.json").read_text())
    assert redone["curve"] == result["curve"] and redone["artifacts"] == result["artifacts"]


def test_sweep_status_never_renames_an_unreadable_result(tmp_path, capsys):
    (tmp_path / "sweep.toml").write_text(SWEEP, encoding="utf-8")
    folder = tmp_path / "s" / SPEC.run_id
    folder.mkdir(parents=True)
    (folder / "result.json").write_text('{"status": "ok", "run_')  # half written by a copy
    before = snapshot(tmp_path / "s")
    cli.main(["sweep", "status", str(tmp_path / "sweep.toml"), "--store", str(tmp_path / "s")])
    assert snapshot(tmp_path / "s") == before


def test_verify_of_a_missing_store_is_a_user_mistake(tmp_path, capsys):
    assert cli.main(["verify", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_verify_imports_no_torch(tmp_path):
    import subprocess
    import sys

    folder = tmp_path / "s" / SPEC.run_id
    folder.mkdir(parents=True)
    (folder / "final.pt").write_bytes(b"weights")
    entry = {"size": 7, "sha256": hashlib.sha256(b"weights").hexdigest()}
    (folder / "result.json").write_text(
        json.dumps({"run_id": SPEC.run_id, "status": "ok", "artifacts": {"final.pt": entry}})
    )
    code = (
        "import sys; from earlyprune.cli import main; c = main(['verify', sys.argv[1]]); "
        "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(c)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "s")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "1 finished runs" in out.stdout and "0 damaged" in out.stdout
