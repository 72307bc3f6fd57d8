"""benchmarks/gpu_check.py runs its exactness parts on CPU (no timing asserted).

The whole ``--device cpu --quick`` run takes minutes on 2 shared cores, so the suite runs the
parts that check exactness (resident batches, selection kernels, kill-and-resume bit identity)
and the scoring list on its own; the full quick run is for ``.ci/run`` and by hand.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def test_gpu_check_exactness_parts_pass_on_cpu(capsys):
    sys.path.insert(0, str(BENCH))
    try:
        gpu_check = importlib.import_module("gpu_check")
        only = ["resident_data", "selection", "kill_and_resume", "accumulate"]
        result = gpu_check.main(["--device", "cpu", "--quick", "--only", *only])
    finally:
        sys.path.remove(str(BENCH))
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == json.loads(json.dumps(result))
    assert result["ok"] and result["device_kind"] == "cpu" and result["size"] == "quick"
    assert set(only) <= set(result) and "training" not in result
    assert result["kill_and_resume"]["bit_identical"]
    assert result["resident_data"]["equal_batches"]
    assert result["accumulate"]["lenet_k2_max_abs_diff"] <= 1e-5
    memory = result["accumulate"]["resnet20_memory"]  # the estimate only, on a CPU
    assert memory["k=1"]["estimate_mib"] > memory["k=2"]["estimate_mib"] > 1024
    assert {"kthvalue_ms", "sort_ms"} <= set(result["selection"])


def test_gpu_check_fused_and_structure_parts_report_on_cpu(capsys, monkeypatch):
    sys.path.insert(0, str(BENCH))
    try:
        gpu_check = importlib.import_module("gpu_check")
        fused = importlib.import_module("_gpu_fused")
        # the tiniest pack sizes: this checks the wiring, not the speed
        real = fused.fused_part
        monkeypatch.setattr(
            gpu_check,
            "fused_part",
            lambda d, b, sizes, *rest, **kw: real(d, b, (1, 2), *rest, **kw),
        )
        result = gpu_check.main(["--device", "cpu", "--quick", "--only", "fused", "structure"])
    finally:
        sys.path.remove(str(BENCH))
    capsys.readouterr()
    assert result["ok"], result
    out = result["fused"]
    # ResNet-20: 40.8 M forward MACs, × 2 FLOPs × 3 (forward + backward) ≈ 2 PFLOP a run
    assert out["train_gflop_per_image"] == round(6 * 40_813_184 / 1e9, 4)
    assert 1.9 < out["pflop_per_run"] < 2.0
    # Figure 4 (635) + Figure 5 (1810) share the 360 unablated runs and the 5 He dense runs
    assert out["grid_runs"] == 635 + 1810 - 365
    assert out["card"] == "peak unknown" and out["peak_memory"] == "RSS"
    assert set(out["fp32"]) >= {"K=1", "K=2", "best", "grid_device_hours"}
    best = out["fp32"]["best"]
    assert list(k for k in out["bf16"] if k.startswith("K=")) == [best]  # quick: best K only
    for precision in ("fp32", "bf16"):
        row = out[precision][out[precision]["best"]]
        assert row["of_peak"] == "peak unknown" and row["peak_memory_mib"] > 0
        hours = out["grid_runs"] / row["runs_per_hour"]
        assert out[precision]["grid_device_hours"] == pytest.approx(hours, rel=1e-2, abs=0.1)
    structure = result["structure"]
    assert structure["nm:2:4"] == {"skipped": "needs CUDA"}
    for key in ("channel@0.5", "channel@0.9", "unstructured@0.5", "unstructured@0.9"):
        assert structure[key]["outputs_equal"] is True, key


def test_peak_table_matches_cards_by_cuda_name(monkeypatch):
    sys.path.insert(0, str(BENCH))
    try:
        fused = importlib.import_module("_gpu_fused")
    finally:
        sys.path.remove(str(BENCH))
    names = {
        "NVIDIA H100 80GB HBM3": "H100 SXM",
        "NVIDIA H100 PCIe": "H100 PCIe",
        "NVIDIA H100 NVL": "H100 NVL",
        "NVIDIA H200": "H200 SXM",
        "NVIDIA A100-SXM4-80GB": "A100",
        "NVIDIA GeForce RTX 4090": None,
    }
    for name, row in names.items():
        monkeypatch.setattr(fused.torch.cuda, "get_device_name", lambda _d, name=name: name)
        assert fused.card(fused.torch.device("cuda")) == row, name
    assert fused.card(fused.torch.device("cpu")) is None


def test_gpu_check_modes_part_reports_compile_against_plain_on_cpu(capsys, monkeypatch):
    # dynamo's eager backend: the part's wiring, without inductor's ~17 s build on a CPU
    # (tests/test_modes_compile.py compiles for real)
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda net, **kw: real(net, backend="eager", **kw))
    sys.path.insert(0, str(BENCH))
    try:
        gpu_check = importlib.import_module("gpu_check")
        result = gpu_check.main(["--device", "cpu", "--quick", "--only", "modes"])
    finally:
        sys.path.remove(str(BENCH))
    capsys.readouterr()
    out = result["modes"]
    assert result["ok"] and out["ok"], result
    assert out["network"] == "smallcnn" and out["autotune"] == {"skipped": "needs CUDA"}
    assert out["plain"]["images_per_s"] > 0 and out["compile"]["of_plain"] > 0
    assert set(out) >= {"plain", "compile", "batch", "timed_steps"}
