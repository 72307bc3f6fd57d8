"""Device kinds, the identity rule for CPU, and the deterministic-CUDA settings (mocked on CPU)."""

from __future__ import annotations

import os

import pytest
import torch

from earlyprune.core import device_identity as di


def test_cpu_kind_stays_out_of_the_identity():
    assert di.device_kind("cpu") == "cpu" and di.identity_kind("cpu") is None
    assert di.identity_kind("cuda-sm90-nvidia-h100") == "cuda-sm90-nvidia-h100"


def test_cuda_kind_names_capability_and_card(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d: (9, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d: "NVIDIA H100 80GB HBM3")
    assert di.device_kind("cuda:3") == "cuda-sm90-nvidia-h100-80gb-hbm3"
    assert di.device_kind("cuda:0") == di.device_kind("cuda:3")  # the index is not the kind


def test_cuda_without_a_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA GPU"):
        di.device_kind("cuda")


def _flags():
    return (
        torch.are_deterministic_algorithms_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.allow_tf32,
        torch.backends.cuda.matmul.allow_tf32,
        os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    )


@pytest.mark.parametrize(("precision", "tf32"), [("fp32", False), ("tf32", True)])
def test_deterministic_sets_and_restores_every_flag(precision, tf32, monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = _flags()
    with di.deterministic("cpu"):
        assert _flags() == before  # a no-op on CPU
    with pytest.raises(RuntimeError, match="boom"), di.deterministic("cpu", precision, force=True):
        assert _flags() == (True, True, False, tf32, tf32, di.CUBLAS_WORKSPACE)
        raise RuntimeError("boom")
    assert _flags() == before
    with pytest.raises(ValueError, match="unknown precision"), di.deterministic("cuda", "fp16"):
        pass


@pytest.mark.parametrize(("precision", "tf32"), [("fp32", False), ("tf32", True)])
def test_autotune_allows_nondeterminism_and_benchmarking_then_restores(
    precision, tf32, monkeypatch
):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = _flags()
    with di.deterministic("cpu", autotune=True):
        assert _flags() == before  # still a no-op on CPU
    with pytest.raises(RuntimeError, match="boom"):
        with di.deterministic("cpu", precision, force=True, autotune=True):
            # TF32 as the precision says; the workspace is harmless and kept
            assert _flags() == (False, False, True, tf32, tf32, di.CUBLAS_WORKSPACE)
            raise RuntimeError("boom")
    assert _flags() == before
    with di.deterministic("cpu", precision, force=True, autotune=False):
        assert _flags()[:3] == (True, True, False)  # off: exactly the deterministic settings


def test_tf32_is_a_precision_of_its_own_with_its_own_id():
    from earlyprune.run.spec import RunSpec

    base = RunSpec(dataset="mnist", method="snip", sparsity=0.9)
    tf32 = RunSpec(dataset="mnist", method="snip", sparsity=0.9, precision="tf32")
    assert tf32.run_id != base.run_id
    assert RunSpec(dataset="mnist", method="snip", sparsity=0.9, precision="fp32").run_id == (
        base.run_id
    )
