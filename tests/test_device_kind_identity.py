"""The kind of device is part of a run's identity (issue 22): CPU ids unchanged, a (mocked)
CUDA spec gets its own id, and a checkpoint made on another kind is refused, not resumed."""

from __future__ import annotations

import pytest
import torch
from conftest import H100_KIND, fake_h100s

from earlyprune.core.errors import SpecError
from earlyprune.run.pipeline import run
from earlyprune.run.spec import RunSpec, canonical_json
from earlyprune.run.store import RunStore

H100 = H100_KIND


@pytest.fixture(autouse=True)
def no_gpu_here(monkeypatch):
    """These tests describe a machine without a GPU unless they fake one (also on a GPU host)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.fixture
def one_h100(monkeypatch):
    fake_h100s(monkeypatch)


def test_cpu_specs_keep_their_ids():
    spec = RunSpec(method="snip", sparsity=0.9, epochs=0.25)
    assert spec.device_kind == "cpu"  # no GPU here: auto resolves to the CPU
    assert canonical_json(spec) == '{"epochs":0.25,"method":"snip","sparsity":0.9}'
    assert spec.replace(device="cpu").run_id == spec.run_id


def test_a_cuda_spec_gets_another_id(one_h100):
    cpu = RunSpec(method="snip", sparsity=0.9, device="cpu")
    for device in ("auto", "cuda", "cuda:1"):
        gpu = RunSpec(method="snip", sparsity=0.9, device=device)
        assert gpu.device_kind == H100 and gpu.run_id != cpu.run_id
        assert gpu.dense_spec().device_kind == H100  # its dense run is the GPU's too
    assert RunSpec(method="snip", sparsity=0.9, device="cuda:1").run_id == gpu.run_id  # no index


def test_a_stored_spec_without_a_kind_keeps_its_id(one_h100):
    cpu = RunSpec(method="snip", sparsity=0.9, device="cpu")
    stored = {k: v for k, v in cpu.to_dict().items() if k != "device_kind"}
    assert RunSpec.from_dict({**stored, "device": "cuda"}).run_id == cpu.run_id


def test_a_checkpoint_made_on_another_kind_is_refused(tmp_path):
    spec = RunSpec(epochs=1.5, device="cpu")
    store = RunStore(tmp_path / "s")
    latest = store.path(spec.run_id, "latest.pt")

    def kill_after_first_checkpoint(step, *_):
        if latest.exists():
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(spec, store, callbacks=[kill_after_first_checkpoint], progress=False)
    ckpt = store.load_tensors(spec.run_id, "latest.pt")
    assert ckpt["device_kind"] == "cpu"
    # The same id resumed by a GPU (a spec made on a CPU machine, run on a GPU), seen from the
    # other side: a resume point a GPU wrote is refused on the CPU.
    store.save_tensors(spec.run_id, "latest.pt", {**ckpt, "device_kind": H100})
    with pytest.raises(SpecError, match=f"resume point was made on {H100}, not on this run's cpu"):
        run(spec, store, progress=False)
    assert store.read_result(spec.run_id) is None  # nothing stored
    store.save_tensors(spec.run_id, "latest.pt", ckpt)  # its own kind: resumed
    assert run(spec, store, progress=False)["status"] == "ok"
    assert store.load_tensors(spec.run_id, "final.pt")["device_kind"] == "cpu"


# ---- planning GPU runs on a machine without one, and running them where they belong --------
A100 = "cuda-sm80-nvidia-a100-sxm4-80gb"


def test_a_gpu_spec_on_a_machine_without_cuda_must_say_its_kind():
    with pytest.raises(SpecError, match="CUDA is not available here; to plan GPU runs") as err:
        RunSpec(method="snip", sparsity=0.9, device="cuda")
    assert "device_kind" in str(err.value) and "earlyprune list devices" in str(err.value)
    planned = RunSpec(method="snip", sparsity=0.9, device="cuda", device_kind=H100)
    assert planned.device_kind == H100 and planned.dense_spec().device_kind == H100


def test_a_planned_kind_gives_the_id_the_gpu_machine_computes(monkeypatch):
    planned = RunSpec(method="snip", sparsity=0.9, device="cuda", device_kind=H100)
    auto_planned = RunSpec(method="snip", sparsity=0.9, device_kind=H100)
    fake_h100s(monkeypatch)  # now on the GPU machine: the kind is resolved from its card
    on_the_gpu = RunSpec(method="snip", sparsity=0.9, device="cuda")
    assert planned.run_id == on_the_gpu.run_id == auto_planned.run_id


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"device_kind": "h100"}, "device_kind must be 'cpu' or a GPU's kind"),
        ({"device_kind": 3}, "device_kind must be 'cpu' or a GPU's kind"),
        ({"device": "cpu", "device_kind": H100}, "device 'cpu' computes CPU numbers"),
    ],
)
def test_a_wrong_device_kind_is_one_line(fields, message):
    with pytest.raises(SpecError, match=message):
        RunSpec(method="snip", sparsity=0.9, **fields)


def test_a_gpu_run_is_refused_where_it_would_compute_cpu_numbers(tmp_path):
    # Planned for an H100, handed to a CPU machine (a worker without a GPU): nothing computed.
    store = RunStore(tmp_path / "s")
    spec = RunSpec(method="snip", sparsity=0.9, epochs=0.25, device_kind=H100)
    with pytest.raises(
        SpecError, match=f"id is for {H100} numbers, but here it would compute on cpu"
    ):
        run(spec, store, progress=False)
    assert store.read_result(spec.run_id) is None
    assert not store.path(spec.run_id, "mask.pt").exists()


def test_the_device_follows_the_spec_s_kind(monkeypatch):
    from earlyprune.run.device_kinds import run_device

    cpu_planned = RunSpec(method="snip", sparsity=0.9)  # auto, made here: a CPU run
    a100_planned = RunSpec(method="snip", sparsity=0.9, device="cuda", device_kind=A100)
    h100_planned = RunSpec(method="snip", sparsity=0.9, device="cuda:1", device_kind=H100)
    fake_h100s(monkeypatch)  # the worker has H100s
    # A CPU run stays one on a GPU worker (its id promises CPU numbers) ...
    assert run_device(cpu_planned, "auto") == torch.device("cpu")
    assert run_device(h100_planned, "cuda:1") == torch.device("cuda:1")  # ... a GPU run its GPU,
    with pytest.raises(
        SpecError, match=f"id is for {A100} numbers, but here it would compute on {H100}"
    ):
        run_device(a100_planned, "cuda")  # ... and another card's run is refused
    with pytest.raises(SpecError, match="only 2 CUDA device"):
        run_device(h100_planned, "cuda:5")


def test_list_devices_prints_each_device_s_kind(monkeypatch, capsys):
    from earlyprune import cli

    assert cli.main(["list", "devices"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split() == ["cpu", "cpu"]
    fake_h100s(monkeypatch)
    assert cli.main(["list", "devices"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split() for line in lines[2:]] == [["cuda:0", H100], ["cuda:1", H100]]


def test_slurm_asks_for_gpus_from_the_runs_kinds():
    from earlyprune.sweeps.executors.slurm import SlurmOptions, job_parameters

    gpu_runs = [RunSpec(epochs=0.25, seed=i, device_kind=H100) for i in range(3)]
    cpu_runs = [RunSpec(epochs=0.25, seed=i) for i in range(3)]  # auto, planned here: CPU runs
    assert job_parameters(SlurmOptions(), gpu_runs, 2)["gpus_per_task"] == 1
    assert "gpus_per_task" not in job_parameters(SlurmOptions(), cpu_runs, 2)
    # GPUs for runs whose ids say CPU: they would compute on the CPUs, so refused up front.
    with pytest.raises(SpecError, match="planned as CPU runs .* give their device_kind"):
        job_parameters(SlurmOptions(gpus_per_task=1), cpu_runs, 2)


def test_a_sweep_file_plans_gpu_runs_on_a_cpu_machine(tmp_path, monkeypatch, capsys):
    from earlyprune import cli

    toml = tmp_path / "gpu.toml"
    body = (
        '[base]\ndataset = "fashion-mnist-mini"\nmethod = "snip"\nsparsity = 0.5\ndevice = "cuda"\n'
    )
    toml.write_text(body + "[options]\ndense = false\n")
    argv = ["sweep", "plan", str(toml), "--store", str(tmp_path / "s")]
    assert cli.main(argv) == 2  # no kind given, no GPU here: one line
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "give their device_kind" in err
    toml.write_text(body + f'device_kind = "{H100}"\n[options]\ndense = false\n')
    assert cli.main(argv) == 0
    planned = capsys.readouterr().out
    fake_h100s(monkeypatch)
    assert (
        RunSpec(dataset="fashion-mnist-mini", method="snip", sparsity=0.5, device="cuda").run_id
        in planned
    )


def test_a_sweep_worker_of_another_kind_leaves_the_run_pending(tmp_path, capsys):
    from earlyprune.sweeps.executors.base import INTERRUPTED, check_specs, run_one

    spec = RunSpec(method="snip", sparsity=0.9, epochs=0.25, device_kind=H100)
    store = RunStore(tmp_path / "s")
    # Planned here for GPU nodes (Slurm, Ray): the planning check lets it through ...
    check_specs([spec], None, need_data=False)
    # ... a local sweep would compute it here, on the CPU: refused in one line, naming the run.
    with pytest.raises(SpecError, match=f"run {spec.run_id} .*id is for {H100} numbers"):
        check_specs([spec], None, need_data=True)
    # A worker without its kind of device refuses it: nothing stored, not "failed", pending.
    assert run_one(spec, str(store.root), None, False, False) == INTERRUPTED
    assert store.read_result(spec.run_id) is None
    assert "refused" in capsys.readouterr().err
