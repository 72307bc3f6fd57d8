"""One run on two processes (gloo, CPU): same result as one process, same mask on every rank."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from earlyprune.run.pipeline import run
from earlyprune.run.spec import RunSpec
from earlyprune.run.store import RunStore

# A network without BatchNorm: with BatchNorm each rank normalizes over its own share of the
# batch (SyncBatchNorm needs CUDA), which is standard DDP behaviour but not bit-comparable.
SPEC = RunSpec(model="lenet_300_100", method="snip", sparsity=0.9, epochs=0.5, device="cpu")
#: The same run on two processes: its own run id (issue 12: one run id, one set of numbers).
DDP = SPEC.replace(world_size=2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, store_root: str, out_dir: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    import earlyprune.run.pipeline as pipeline
    from earlyprune.run.dist_store import DistStore
    from earlyprune.train.distributed import Distributed

    job = Distributed.from_env()
    assert job is not None
    job.init()
    seen: dict[str, dict] = {}
    original = pipeline.stored_mask

    def spy(recipe, setup, store, model):  # records the mask this rank actually trains with
        mask = original(recipe, setup, store, model)
        seen["mask"] = {n: m.cpu() for n, m in mask.items()}
        return mask

    pipeline.stored_mask = spy
    result = pipeline.run(DDP, DistStore(store_root, job), job=job)
    torch.save(
        {"mask": seen["mask"], "accuracy": result["test_accuracy"]},
        Path(out_dir) / f"rank{rank}.pt",
    )
    job.close()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_ranks_share_one_mask_and_only_rank0_writes(tmp_path):
    store_root = tmp_path / "store"
    mp.start_processes(
        _worker,
        args=(2, _free_port(), str(store_root), str(tmp_path)),
        nprocs=2,
        start_method="spawn",
    )
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    stored = torch.load(store_root / DDP.run_id / "mask.pt", weights_only=True)
    for name, m in stored.items():
        assert torch.equal(ranks[0]["mask"][name], m)
        assert torch.equal(ranks[1]["mask"][name], m)
    assert ranks[0]["accuracy"] == ranks[1]["accuracy"]
    # Only rank 0 wrote: no leftover temp files from a second writer, one result.
    files = sorted(p.name for p in (store_root / DDP.run_id).iterdir())
    assert files == [
        "final.pt",
        "mask.pt",
        "metrics.jsonl",
        "numerics.json",
        "result.json",
        "spec.json",
    ]
    lines = (store_root / DDP.run_id / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len(
        json.loads((store_root / DDP.run_id / "result.json").read_text())["curve"]
    )


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_torchrun_cli_equals_single_process(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(_free_port()),
        "-m",
        "earlyprune.cli",
        "run",
        "--dataset",
        "fashion-mnist-mini",
        "--model",
        "lenet_300_100",
        "--method",
        "snip",
        "--sparsity",
        "0.9",
        "--epochs",
        "0.5",
        "--device",
        "cpu",
        "--store",
        str(tmp_path / "ddp"),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.count("test accuracy") == 1  # only rank 0 speaks

    single = run(SPEC, RunStore(tmp_path / "single"), progress=False)
    # Two ranks never store under the single-process id: world size is part of the identity.
    assert not (tmp_path / "ddp" / SPEC.run_id).exists()
    ddp = json.loads((tmp_path / "ddp" / DDP.run_id / "result.json").read_text())
    assert ddp["status"] == "ok" and ddp["environment"]["world_size"] == 2
    assert abs(ddp["test_accuracy"] - single["test_accuracy"]) <= 0.002
    a = torch.load(tmp_path / "ddp" / DDP.run_id / "final.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "single" / SPEC.run_id / "final.pt", weights_only=True)["model"]
    for name in b:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5)
    # Pruned weights stayed exactly zero under DDP.
    mask = torch.load(tmp_path / "ddp" / DDP.run_id / "mask.pt", weights_only=True)
    for name, m in mask.items():
        assert not a[name][~m].any()


def _dying_worker(rank: int, world: int, port: int, store_root: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    from earlyprune.run.dist_store import DistStore
    from earlyprune.train.distributed import Distributed

    job = Distributed.from_env()
    assert job is not None
    job.init()

    def die(*_args) -> None:  # rank 1 is lost after the first epoch's checkpoint
        if rank == 1:
            os._exit(1)

    spec = DDP.replace(epochs=1.25)
    run(spec, DistStore(store_root, job), job=job, callbacks=[die])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_lost_rank_leaves_the_run_resumable_not_failed(tmp_path):
    store_root = tmp_path / "store"
    try:
        mp.start_processes(
            _dying_worker, args=(2, _free_port(), str(store_root)), nprocs=2, start_method="spawn"
        )
    except Exception as exc:  # rank 0's error, or rank 1's exit, ends the job
        assert "RunInterrupted" in str(exc) or "exit code 1" in str(exc), exc
    folder = store_root / DDP.replace(epochs=1.25).run_id
    assert not (folder / "result.json").exists()  # no `failed` result blocks the run
    assert (folder / "latest.pt").exists()  # the first epoch is kept to resume from
