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


# ---- the whole run (scoring too) computes under the deterministic settings -----------------
SEEN_SCORER = """
import torch


def score(model, batch):
    with open(__file__ + ".seen", "a") as out:  # the settings while scoring
        deterministic = torch.are_deterministic_algorithms_enabled()
        out.write(f"{deterministic} {torch.backends.cudnn.allow_tf32}\\n")
    return {n: p.detach().abs() for n, p in model.named_parameters() if p.dim() > 1}
"""


@pytest.mark.parametrize("engine", ["solo", "fused"])
def test_scoring_runs_under_the_run_s_numerics(tmp_path, monkeypatch, engine):
    # On CUDA the settings apply for real; on this CPU they are forced, to see where they hold.
    # Scoring outside them would score in TF32 with nondeterministic kernels under an fp32 id.
    from earlyprune.run import fused_run, pipeline
    from earlyprune.run.spec import RunSpec
    from earlyprune.run.store import RunStore

    def forced(device, precision="fp32", force=False, autotune=False):
        return di.deterministic(device, precision, force=True, autotune=autotune)

    monkeypatch.setattr(pipeline, "deterministic", forced)
    monkeypatch.setattr(fused_run, "deterministic", forced)
    # Its own content per case: a loaded user file is reused by content (and so is __file__).
    (tmp_path / "seen.py").write_text(f"# {engine}{SEEN_SCORER}", encoding="utf-8")
    spec = RunSpec(method=f"{tmp_path}/seen.py:score", sparsity=0.5, epochs=0.1, device="cpu")
    store = RunStore(tmp_path / "s")
    if engine == "solo":
        assert pipeline.run(spec, store, progress=False)["status"] == "ok"
    else:
        fused = spec.replace(engine="fused")
        assert fused_run.run_pack([fused], store)[fused.run_id] == "ok"
    seen = (tmp_path / "seen.py.seen").read_text().splitlines()
    assert seen and set(seen) == {"True False"}, seen
    assert not torch.are_deterministic_algorithms_enabled()  # restored after the run


def test_importing_earlyprune_fixes_the_cublas_workspace():
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "CUBLAS_WORKSPACE_CONFIG"}
    code = "import os, earlyprune; print(os.environ.get('CUBLAS_WORKSPACE_CONFIG'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == di.CUBLAS_WORKSPACE, out.stderr
    env["CUBLAS_WORKSPACE_CONFIG"] = ":16:8"  # a user's own choice is kept
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == ":16:8"


# ---- no operation without a deterministic CUDA kernel in the built-in networks -------------
@pytest.mark.parametrize(
    ("name", "classes", "shape"),
    [("resnet20", 10, (3, 32, 32)), ("vgg16", 10, (3, 32, 32)), ("resnet50", 1000, (3, 64, 64))],
)
def test_the_paper_s_networks_avoid_adaptive_average_pooling(monkeypatch, name, classes, shape):
    # adaptive_avg_pool2d's backward raises on CUDA under use_deterministic_algorithms(True): every
    # fp32 GPU run (and its scoring) would fail. Global pooling is a plain mean instead ...
    import torch.nn.functional as F

    from earlyprune.models import MODELS

    def refused(*_args, **_kwargs):
        raise RuntimeError(
            "adaptive_avg_pool2d_backward_cuda does not have a deterministic implementation"
        )

    monkeypatch.setattr(F, "adaptive_avg_pool2d", refused)
    model = MODELS.get(name).build(classes, shape)
    model(torch.randn(2, *shape)).sum().backward()


def test_the_mean_pooling_is_bit_identical_to_adaptive_pooling_on_cpu(monkeypatch):
    # ... which changes no CPU number: forward and every gradient equal bit for bit.
    import torch.nn.functional as F

    from earlyprune.models import MODELS, cifar_resnet

    grads = []
    for pool in (lambda x: F.adaptive_avg_pool2d(x, 1).flatten(1), None):
        if pool is not None:
            monkeypatch.setattr(cifar_resnet, "global_avg_pool", pool)
        else:
            monkeypatch.undo()
        torch.manual_seed(0)
        model = MODELS.get("resnet20").build(10, (3, 32, 32)).to(memory_format=torch.channels_last)
        x = torch.randn(8, 3, 32, 32).contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(model(x), torch.arange(8) % 10)
        loss.backward()
        grads.append([loss.detach(), *(p.grad for p in model.parameters())])
    assert all(torch.equal(a, b) for a, b in zip(*grads, strict=True))


def test_a_run_that_meets_a_nondeterministic_kernel_says_what_to_do(tmp_path):
    from earlyprune.run import pipeline
    from earlyprune.run.spec import RunSpec
    from earlyprune.run.store import RunStore

    (tmp_path / "pool.py").write_text(
        "def score(model, batch):\n"
        "    raise RuntimeError('adaptive_avg_pool2d_backward_cuda does not have a deterministic "
        "implementation, but you set torch.use_deterministic_algorithms(True)')\n",
        encoding="utf-8",
    )
    spec = RunSpec(method=f"{tmp_path}/pool.py:score", sparsity=0.5, epochs=0.1, device="cpu")
    result = pipeline.run(spec, RunStore(tmp_path / "s"), progress=False)
    assert result["status"] == "failed"
    assert "x.mean((2, 3))" in result["error"] and "--autotune" in result["error"]
