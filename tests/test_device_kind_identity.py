"""The kind of device is part of a run's identity (issue 22): CPU ids unchanged, a (mocked)
CUDA spec gets its own id, and a checkpoint made on another kind is refused, not resumed."""

from __future__ import annotations

import pytest
import torch

from earlyprune.core.errors import SpecError
from earlyprune.run.pipeline import run
from earlyprune.run.spec import RunSpec, canonical_json
from earlyprune.run.store import RunStore

H100 = "cuda-sm90-nvidia-h100-80gb-hbm3"


@pytest.fixture
def one_h100(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (9, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "NVIDIA H100 80GB HBM3")


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
