"""Several runs per GPU: the local pool's GPU per worker and Ray's GPU request (no GPU needed:
the device count is mocked after the specs are made, so CUDA is never started)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import H100_KIND

from earlyprune import cli
from earlyprune.core.errors import SpecError
from earlyprune.run.spec import RunSpec
from earlyprune.run.store import RunStore
from earlyprune.sweeps import grid
from earlyprune.sweeps.executors import local
from earlyprune.sweeps.executors.ray import on_assigned_gpu, task_options
from earlyprune.sweeps.grid import run_specs

H100 = H100_KIND


def specs(device: str, n: int, kind: str | None = H100) -> list[RunSpec]:
    """GPU runs planned for an H100 (``kind``; None: resolved here, on this CPU machine)."""
    kind = None if device == "cpu" else kind
    return [RunSpec(epochs=0.25, seed=i, device=device, device_kind=kind) for i in range(n)]


@pytest.fixture(autouse=True)
def no_gpu_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """Specs made in these tests are planned on a machine without a GPU (also on a GPU host)."""
    fake_gpus(monkeypatch, 0)


def fake_gpus(monkeypatch: pytest.MonkeyPatch, count: int, visible: str | None = None) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)


def test_workers_per_gpu_sizes_the_pool_and_spreads_it(monkeypatch: pytest.MonkeyPatch) -> None:
    runs, cuda = specs("auto", 10), specs("cuda", 4)  # made before CUDA is faked
    fake_gpus(monkeypatch, 2)
    assert local.pool_plan(runs, None) == (2, ["0", "1"])  # default: one per GPU
    n, gpus = local.pool_plan(runs, None, 3)
    assert n == 6 and gpus == ["0", "1", "0", "1", "0", "1"]  # worker i on GPU i % 2
    assert local.pool_plan(runs, 4, 3) == (4, ["0", "1", "0", "1"])  # --workers decides
    assert local.pool_plan(runs[:5], None, 3)[0] == 5  # never more workers than runs
    fake_gpus(monkeypatch, 2, visible="3,5")  # the visible GPUs, by their own names
    assert local.pool_plan(runs, None, 2) == (4, ["3", "5", "3", "5"])
    assert local.pool_plan(cuda, None, 2) == (4, ["3", "5", "3", "5"])
    # Runs planned on a machine without a GPU are CPU runs (their ids say so): no GPU pinning.
    monkeypatch.setattr(local, "cores", lambda: 3)
    assert local.pool_plan(specs("auto", 10, kind="cpu"), None, 2) == (3, [])


def test_cpu_runs_ignore_the_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    runs, auto = specs("cpu", 8), specs("auto", 8)
    fake_gpus(monkeypatch, 2)
    monkeypatch.setattr(local, "cores", lambda: 3)
    assert local.pool_plan(runs, None, 4) == (3, [])
    fake_gpus(monkeypatch, 0)
    assert local.pool_plan(auto, None, 4) == (3, [])


def test_run_specs_hands_workers_per_gpu_to_the_local_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = []

    def plan(runs: list[RunSpec], workers: int | None, per_gpu: int) -> tuple[int, list[str]]:
        seen.append((workers, per_gpu))
        raise KeyboardInterrupt  # stop before any run starts

    monkeypatch.setattr(local, "pool_plan", plan)
    with pytest.raises(KeyboardInterrupt):
        run_specs(specs("cpu", 1), RunStore(tmp_path / "s"), workers_per_gpu=3, progress=False)
    assert seen == [(None, 3)]


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_bad_workers_per_gpu_is_refused(tmp_path: Path, bad: object) -> None:
    with pytest.raises(SpecError, match="workers_per_gpu must be a positive integer"):
        run_specs(specs("cpu", 1), RunStore(tmp_path / "s"), workers_per_gpu=bad)  # type: ignore[arg-type]
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").iterdir())


def test_workers_per_gpu_cli_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = tmp_path / "s.toml"
    toml.write_text('[base]\ndataset = "fashion-mnist-mini"\nepochs = 0.25\n', encoding="utf-8")
    store = tmp_path / "store"
    argv = ["sweep", "run", str(toml), "--store", str(store), "--workers-per-gpu", "0"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "workers_per_gpu must be a positive integer" in err, err
    with pytest.raises(SystemExit) as stop:  # argparse's own one line
        cli.main([*argv[:-1], "two"])
    assert stop.value.code == 2
    assert "--workers-per-gpu" in capsys.readouterr().err


def test_ray_asks_for_a_share_of_a_gpu() -> None:
    auto, cpu = RunSpec(epochs=0.25, device_kind=H100), RunSpec(epochs=0.25, device="cpu")
    pinned = RunSpec(epochs=0.25, device="cuda:1", device_kind=H100)
    planned_on_cpu = RunSpec(epochs=0.25)  # auto, made here: a CPU run, holds no GPU
    assert task_options(planned_on_cpu, 8, 2, None, 4)["num_gpus"] == 0
    assert task_options(auto, 8, 2, None, 4) == {"num_cpus": 1, "num_gpus": 0.25}
    assert task_options(auto, 8, 2, 2, 1) == {"num_cpus": 4, "num_gpus": 1.0}
    assert task_options(planned_on_cpu, 8, 0, None, 4)["num_gpus"] == 0  # a cluster without GPUs
    with pytest.raises(SpecError, match="has no GPU"):  # an H100's id cannot be computed there
        task_options(auto, 8, 0, None, 4)
    assert task_options(cpu, 8, 2, None, 4)["num_gpus"] == 0  # a CPU run holds no GPU
    # cuda:N used to be forced to no GPU, so Ray hid every GPU from it and the run failed.
    assert task_options(pinned, 8, 2, None, 1)["num_gpus"] == 1.0
    assert task_options(pinned, 8, 2, None, 2)["num_gpus"] == 0.5
    with pytest.raises(SpecError, match="has no GPU"):
        task_options(pinned, 8, 0, None, 1)


def test_ray_task_runs_cuda_n_on_the_gpu_it_was_given() -> None:
    pinned = RunSpec(epochs=0.25, device="cuda:3", device_kind=H100)
    mapped = on_assigned_gpu(pinned, "7")  # Ray gave GPU 7: the task sees it as cuda:0
    assert mapped.device == "cuda:0" and mapped.run_id == pinned.run_id
    assert pinned.device == "cuda:3"  # the caller's spec is left as it was
    assert on_assigned_gpu(pinned, None) is pinned
    auto = RunSpec(epochs=0.25)
    assert on_assigned_gpu(auto, "7") is auto


# ---- the default runs per GPU, from the size of a training step ----------------------------
def test_the_default_share_follows_the_size_of_a_step() -> None:
    from earlyprune.masks.flops import count_flops
    from earlyprune.models import MODELS
    from earlyprune.sweeps.executors.gpu_share import per_gpu_for, step_macs

    # The paper's networks at their presets' batches: CIFAR ResNet-20 shares, ResNet-50 does not.
    assert per_gpu_for(step_macs("resnet20", 10, (3, 32, 32), 128)) == 4
    assert per_gpu_for(step_macs("vgg16", 10, (3, 32, 32), 128)) == 2
    assert per_gpu_for(step_macs("resnet50", 1000, (3, 224, 224), 1024)) == 1
    # A step is batch × one example's multiply-adds (ResNet-20: about 41 M an image).
    one = count_flops(MODELS.get("resnet20").build(10, (3, 32, 32)), (3, 32, 32))["dense"]
    assert 40e6 < one < 42e6 and step_macs("resnet20", 10, (3, 32, 32), 128) == 128 * one
    assert [per_gpu_for(m) for m in (1e9, 1.99e10, 2e10, 1.99e11, 2e11)] == [4, 4, 2, 2, 1]


def test_a_sweep_without_workers_per_gpu_takes_the_default_on_gpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from earlyprune.sweeps.executors import gpu_share

    small = specs("auto", 3)  # smallcnn on the embedded data, planned for H100s
    assert gpu_share.default_per_gpu(small, None) == 4
    monkeypatch.setattr(gpu_share, "per_gpu_for", lambda macs: 1 if macs > 1e9 else 4)
    big = [s.replace(batch_size=100_000) for s in small[:1]]  # one big step decides for all
    assert gpu_share.default_per_gpu([*small, *big], None) == 1
    seen = []

    def plan(runs: list[RunSpec], workers: int | None, per_gpu: int) -> tuple[int, list[str]]:
        seen.append((workers, per_gpu))
        raise KeyboardInterrupt  # stop before any run starts

    monkeypatch.setattr(local, "pool_plan", plan)
    monkeypatch.setattr(local, "default_per_gpu", lambda runs, root: 3)
    monkeypatch.setattr(grid, "check_specs", lambda *a, **k: None)  # H100 runs, checked on a CPU
    fake_gpus(monkeypatch, 2)
    for per_gpu in (None, 1):  # left out: sized by default; an explicit 1 stays 1
        with pytest.raises(KeyboardInterrupt):
            run_specs(small, RunStore(tmp_path / "s"), workers_per_gpu=per_gpu, progress=False)
    assert seen == [(None, 3), (None, 1)]
    fake_gpus(monkeypatch, 0)  # no GPU: the cores decide, never the network's size
    with pytest.raises(KeyboardInterrupt):
        run_specs(small, RunStore(tmp_path / "s"), progress=False)
    assert seen[-1] == (None, 1)
