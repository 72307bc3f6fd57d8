"""The up-front memory check (issue 22): the estimate against counts by hand, linear in the
batch, and a (mocked) GPU too small for a step refused in one line naming the --accumulate k
that fits, with nothing written."""

from __future__ import annotations

import math
import types

import pytest
import torch
from conftest import fake_h100s

from earlyprune import cli
from earlyprune.core.errors import SpecError
from earlyprune.models import create_model
from earlyprune.run import memory_fit
from earlyprune.run.memory_fit import GIB, check_fits, measured, micro_batch
from earlyprune.run.pipeline import run
from earlyprune.run.spec import RunSpec
from earlyprune.run.store import RunStore
from earlyprune.train.memory_need import (
    ACTIVATION_MARGIN,
    FIXED_OVERHEAD,
    measure_step,
    saved_bytes,
)
from earlyprune.train.optim import Schedule

SHAPE = (1, 12, 12)
SCHED = Schedule(10, 10, 128, 0.1, ())  # SGD with momentum 0.9


pytestmark = pytest.mark.usefixtures("one_thread")


def test_lenet_saves_what_a_hand_count_says():
    # Linear saves its input, ReLU its output (the next Linear's input: one storage), the loss
    # its log-probabilities and the int64 labels; the first Linear's input is the input itself.
    # Fixed: nll_loss's float total weight. Parameters, their gradients and SGD's momentum
    # buffers: one float per weight and bias each.
    step = measure_step(create_model("lenet_300_100", 10, input_shape=SHAPE), SCHED, SHAPE, 10)
    assert step.saved_per_example == 4 * (300 + 100 + 10) + 8
    assert step.saved_fixed == 4
    weights = 144 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
    assert step.params == step.grads == step.optimizer == 4 * weights
    assert step.example == 4 * 144 + 8
    assert step.need(128, 64) == (
        3 * 4 * weights
        + math.ceil((4 + 64 * 1648) * (1 + ACTIVATION_MARGIN))
        + 128 * (4 * 144 + 8)
        + FIXED_OVERHEAD
    )


def test_adam_keeps_two_moments_per_weight():
    lenet = create_model("lenet_300_100", 10, input_shape=SHAPE)
    adam = measure_step(lenet, Schedule(10, 10, 128, 0.1, (), optimizer="adam"), SHAPE, 10)
    assert adam.optimizer - 2 * adam.params == 4 * 6  # and each parameter's step count
    assert (
        measure_step(lenet, Schedule(10, 10, 128, 0.1, (), momentum=0.0), SHAPE, 10).optimizer == 0
    )


@pytest.mark.parametrize("name", ["lenet_300_100", "smallcnn", "resnet20"])
def test_saved_bytes_grow_linearly_with_the_examples(name):
    shape = (3, 16, 16) if name == "resnet20" else SHAPE
    step = measure_step(create_model(name, 10, input_shape=shape), SCHED, shape, 10)
    for n in (3, 8, 16):
        model = create_model(name, 10, input_shape=shape)
        assert saved_bytes(model, n, shape, 10) == step.saved(n)
    assert step.saved_per_example > 0


def test_bf16_saves_about_half():
    model = create_model("smallcnn", 10, input_shape=SHAPE)
    fp32 = measure_step(model, SCHED, SHAPE, 10)
    bf16 = measure_step(model, SCHED, SHAPE, 10, precision="bf16")
    assert 0.4 < bf16.saved_per_example / fp32.saved_per_example < 0.75
    assert bf16.saved_fixed > fp32.saved_fixed  # the bf16 copies of the weights


@pytest.fixture
def small_gpu(monkeypatch):
    """A CUDA machine whose one GPU has ``small_gpu(bytes)`` of memory (nothing runs on it)."""
    memory = {"total": 80 * GIB}
    fake_h100s(monkeypatch, count=1)
    props = lambda d=None: types.SimpleNamespace(total_memory=memory["total"])  # noqa: E731
    monkeypatch.setattr(torch.cuda, "get_device_properties", props)
    return lambda total: memory.update(total=total)


def _demo_need(k: int) -> int:
    """The demo preset's step (smallcnn, batch 128, 28×28) in k micro-batches."""
    spec = RunSpec(device="cpu")
    sched = Schedule(10, 10, 128, 0.2, (2,))
    step, _ = measured(spec.model, (1, 28, 28), 10, sched, spec.precision, spec.channels_last)
    return step.need(128, micro_batch(128, k, 1))


def test_a_step_bigger_than_the_gpu_is_refused_naming_the_k_that_fits(small_gpu, tmp_path, capsys):
    small_gpu((_demo_need(2) + _demo_need(4)) // 2)  # fits 4 micro-batches, not 2
    store = RunStore(tmp_path / "runs")
    spec = RunSpec(method="snip", sparsity=0.9, device="cuda", epochs=0.25)
    with pytest.raises(SpecError) as err:
        run(spec, store, progress=False)
    line = str(err.value)
    assert line.startswith("smallcnn at batch 128 (fp32) needs about ") and "\n" not in line
    assert line.endswith(
        ": add --accumulate 4 (micro-batches of 32; BatchNorm statistics then per 32 "
        "examples, as on 4 GPUs)"
    )
    assert store.read_result(spec.run_id) is None and not store.run_dir(spec.run_id).exists()
    argv = ["run", "--dataset", "fashion-mnist-mini", "--method", "snip", "--sparsity", "0.9"]
    code = cli.main([*argv, "--device", "cuda", "--store", str(tmp_path / "cli")])
    err_line = capsys.readouterr().err
    assert code == 2 and err_line.startswith("earlyprune: error: smallcnn at batch 128")
    assert len(err_line.splitlines()) == 1 and not (tmp_path / "cli").exists()


def test_an_accumulating_run_is_told_the_next_k_and_a_fitting_one_passes(small_gpu):
    spec = RunSpec(method="snip", sparsity=0.9, device="cuda", accumulate=2)
    bundle = types.SimpleNamespace(input_shape=(1, 28, 28), num_classes=10)
    sched = Schedule(10, 10, 128, 0.2, (2,))
    small_gpu(_demo_need(8) + 1)
    with pytest.raises(SpecError, match=r"in 2 micro-batches .*: use --accumulate 8 \("):
        check_fits(spec, bundle, sched, torch.device("cuda"))
    small_gpu(_demo_need(2))
    check_fits(spec, bundle, sched, torch.device("cuda"))  # exactly enough: no error
    small_gpu(FIXED_OVERHEAD)
    with pytest.raises(SpecError, match="even micro-batches of one example would not fit"):
        check_fits(spec, bundle, sched, torch.device("cuda"))


def test_a_cpu_run_measures_nothing(monkeypatch):
    def fail(*_args):
        raise AssertionError("measured for a CPU run")

    monkeypatch.setattr(memory_fit, "measured", fail)
    sched = Schedule(10, 10, 128, 0.2, (2,))
    check_fits(RunSpec(device="cpu"), None, sched, torch.device("cpu"))


def test_the_step_memory_benchmark_names_the_smallest_k_that_fits(capsys):
    import json
    import sys
    from pathlib import Path

    bench = Path(__file__).resolve().parent.parent / "benchmarks"
    sys.path.insert(0, str(bench))
    try:
        import step_memory
    finally:
        sys.path.remove(str(bench))
    roomy = step_memory.main(["--tiny"])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == roomy
    row = roomy["fp32"]
    assert row["k=1"] >= row["k=2"] >= row["k=4"] >= row["k=8"] and row["smallest_k"] == 1
    tight = step_memory.main(["--tiny", "--card-gib", "0.5"])  # below the fixed overhead
    assert tight["fp32"]["smallest_k"] is None


# ---- the scoring batch: checked too, naming the largest --scoring-micro-batch that fits ----
def _scoring_check(method: str, card: int, chunk: int | None = None, small_gpu=None) -> str:
    from earlyprune.run.memory_fit import check_scoring_fits

    small_gpu(card)
    spec = RunSpec(method=method, sparsity=0.9, device="cpu", scoring_micro_batch=chunk)
    bundle = types.SimpleNamespace(input_shape=(1, 28, 28), num_classes=10)
    try:
        check_scoring_fits(spec, bundle, Schedule(10, 10, 128, 0.2, (2,)), torch.device("cuda"))
    except SpecError as err:
        return str(err)
    return ""


def test_a_scoring_batch_bigger_than_the_gpu_is_refused_naming_a_chunk_that_fits(small_gpu):
    step, _ = measured("smallcnn", (1, 28, 28), 10, Schedule(10, 10, 128, 0.2, (2,)), "fp32", True)
    fixed = step.params + step.grads + 100 * step.example + step.saved_fixed + (1 << 30)
    one = step.saved_per_example * 1.25  # per example of a chunk, first-order scorer
    card = int(fixed + 20.5 * one)  # 20 examples at once fit, 100 do not
    line = _scoring_check("snip", card, small_gpu=small_gpu)
    assert line.startswith("scoring 100 examples (snip) on smallcnn in chunks of 100 needs about")
    assert line.endswith(": add --scoring-micro-batch 16") and "\n" not in line
    assert _scoring_check("snip", card, chunk=16, small_gpu=small_gpu) == ""  # the advice fits
    assert _scoring_check("snip", card, chunk=32, small_gpu=small_gpu) != ""
    # GraSP's double backward holds about three graphs: the same card fits chunks of 4.
    assert _scoring_check("grasp", card, small_gpu=small_gpu).endswith("--scoring-micro-batch 4")
    # Methods that read no batch are never refused for it.
    for method in ("synflow", "magnitude", "random", "lamp"):
        assert _scoring_check(method, card // 100, small_gpu=small_gpu) == ""
    assert "even one example" in _scoring_check("snip", int(fixed), small_gpu=small_gpu)
