"""One run id, one set of numbers (issue 12, items 3 and 6).

However a spec is launched — `earlyprune run`, a sweep in-process, a pool of workers — it pins its
own thread count, so the numbers are identical; a torchrun job names its world size; the
environment's failures (out of memory, a lost peer, Ctrl-C) never store a ``failed`` result.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import earlyprune as ep
from earlyprune import cli
from earlyprune.core.errors import SpecError
from earlyprune.run import pipeline, stages
from earlyprune.run.environment import RunInterrupted, is_environmental
from earlyprune.run.spec import RunSpec
from earlyprune.run.store import RunStore
from earlyprune.sweeps.grid import run_specs

SPEC = RunSpec(method="snip", sparsity=0.9, epochs=0.25)
ARGV = [
    "run",
    "--dataset",
    "fashion-mnist-mini",
    "--method",
    "snip",
    "--sparsity",
    "0.9",
    "--epochs",
    "0.25",
]


def _final(store: Path, spec: RunSpec) -> dict[str, torch.Tensor]:
    return torch.load(store / spec.run_id / "final.pt", weights_only=True)["model"]


@pytest.mark.slow
def test_run_sweep_in_process_and_two_workers_give_identical_numbers(tmp_path, capsys):
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # what an unpinned `earlyprune run` on a 2-core machine would use
    try:
        assert cli.main([*ARGV, "--store", str(tmp_path / "cli")]) == 0
        assert torch.get_num_threads() == 2  # restored after the run
    finally:
        torch.set_num_threads(before)
    capsys.readouterr()
    run_specs([SPEC], RunStore(tmp_path / "one"), workers=1, progress=False)
    other = SPEC.replace(seed=1)  # a pool of two needs two runs
    run_specs([SPEC, other], RunStore(tmp_path / "two"), workers=2, progress=False)
    results = [
        json.loads((tmp_path / s / SPEC.run_id / "result.json").read_text())
        for s in ("cli", "one", "two")
    ]
    assert all(r["status"] == "ok" for r in results)
    assert [r["environment"]["threads"] for r in results] == [1, 1, 1]
    assert [r["environment"]["world_size"] for r in results] == [1, 1, 1]
    assert all(r["environment"]["device"] == "cpu" for r in results)
    assert results[0]["curve"] == results[1]["curve"] == results[2]["curve"]
    weights = [_final(tmp_path / s, SPEC) for s in ("cli", "one", "two")]
    for name in weights[0]:
        assert torch.equal(weights[0][name], weights[1][name]), name
        assert torch.equal(weights[0][name], weights[2][name]), name


def test_threads_and_world_size_are_part_of_the_id_and_reach_the_dense_run():
    assert SPEC.replace(threads=2).run_id != SPEC.run_id
    assert SPEC.replace(world_size=2).run_id != SPEC.run_id
    assert SPEC.replace(threads=1, world_size=1).run_id == SPEC.run_id  # defaults stay out
    dense = SPEC.replace(threads=2, world_size=2).dense_spec()
    assert (dense.threads, dense.world_size) == (2, 2)


def test_a_world_size_spec_is_refused_outside_its_torchrun_job(tmp_path):
    with pytest.raises(SpecError, match="world_size=2 but launched on 1 process"):
        pipeline.run(SPEC.replace(world_size=2), RunStore(tmp_path / "s"), progress=False)
    assert not (tmp_path / "s").exists()


def test_torchrun_world_size_comes_from_the_environment(tmp_path, monkeypatch, capsys):
    # The CLI names a torchrun job's runs by its world size (lenet and smallcnn alike): the
    # spec it builds under WORLD_SIZE=2 is refused when launched alone, never stored as 1's.
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    seen = []
    monkeypatch.setattr(stages, "prepare", lambda spec, *a: seen.append(spec) or 1 / 0)
    for model in ("lenet_300_100", "smallcnn"):
        with pytest.raises(ZeroDivisionError):
            cli.main([*ARGV, "--model", model, "--store", str(tmp_path / "s")])
    assert [s.world_size for s in seen] == [2, 2]
    assert all(s.run_id != s.replace(world_size=1).run_id for s in seen)


@pytest.mark.parametrize("device", ["mps", "xpu", "meta", "tpu"])
def test_unusable_devices_are_refused_before_anything_is_written(device):
    with pytest.raises(SpecError, match=f"device '{device}' cannot run earlyprune"):
        RunSpec(method="snip", sparsity=0.9, device=device)


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory"),
        MemoryError(),
        KeyboardInterrupt(),
        SystemExit(1),
    ],
    ids=["cuda-oom", "cpu-oom", "ctrl-c", "sys-exit"],
)
def test_the_environments_failures_leave_the_run_resumable(tmp_path, monkeypatch, error):
    store = RunStore(tmp_path / "s")

    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr(stages, "train", broken)
    expected = RunInterrupted if isinstance(error, Exception) else type(error)
    with pytest.raises(expected):
        pipeline.run(SPEC, store, progress=False)
    assert store.read_result(SPEC.run_id) is None  # no `failed` result blocks the run
    monkeypatch.undo()
    assert pipeline.run(SPEC, store, progress=False)["status"] == "ok"


def test_a_lost_torchrun_peer_is_the_environments_failure():
    lost = RuntimeError("[../gloo/transport/tcp/pair.cc:534] Connection closed by peer")
    assert is_environmental(lost, distributed=True)
    assert not is_environmental(RuntimeError("shape mismatch"), distributed=True)
    assert not is_environmental(lost, distributed=False)  # alone, it is the run's own error


def test_run_retry_failed_and_the_stored_summary(tmp_path, monkeypatch, capsys):
    argv = [*ARGV, "--store", str(tmp_path / "s")]

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the run")

    monkeypatch.setattr(stages, "train", broken)
    assert cli.main(argv) == 1
    monkeypatch.undo()
    capsys.readouterr()
    assert cli.main(argv) == 1  # served: failed, and it says so
    out = capsys.readouterr().out
    assert "status=failed  stored" in out and "a bug in the run" in out
    assert cli.main([*argv, "--retry-failed"]) == 0
    assert "test accuracy" in capsys.readouterr().out


def test_numpy_and_torch_scalars_and_near_equal_sparsities_name_one_run():
    plain = RunSpec(method="snip", sparsity=0.9, seed=3)
    for sparsity, seed in [
        (np.float32(0.9), np.int64(3)),
        (torch.tensor(0.9), torch.tensor(3)),
        (np.float64(0.9), 3),
        (0.9000000001, 3),
    ]:
        spec = RunSpec(method="snip", sparsity=sparsity, seed=seed)
        assert spec.run_id == plain.run_id
        assert spec.sparsity == 0.9 and type(spec.seed) is int
    model = ep.create_model("smallcnn", 10)
    want = ep.prune(model, "random", 0.5, seed=3)
    got = ep.prune(model, "random", np.float32(0.5), seed=np.int64(3))
    assert all(torch.equal(want[n], got[n]) for n in want)


def test_a_preset_made_for_another_dataset_warns_naming_its_dataset(tmp_path, capsys):
    argv = [*ARGV, "--preset", "lenet_mnist", "--prune-step", "999999", "--store", str(tmp_path)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "warning: preset 'lenet_mnist' was made for mnist, not fashion-mnist-mini" in err
