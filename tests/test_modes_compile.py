"""``--compile`` (torch.compile) and ``--autotune`` (cuDNN autotuning): what they change, where
they are refused, and how a machine that cannot compile is told apart from a run that failed.

torch.compile takes ~17 s a network on 2 CPU cores, so one slow test compiles (two runs).
"""

from __future__ import annotations

import types

import pytest
import torch
from conftest import H100_KIND
from torch._dynamo.utils import counters

from earlyprune import cli
from earlyprune.core.errors import RunInterrupted, SpecError
from earlyprune.run.pipeline import run
from earlyprune.run.spec import RunSpec
from earlyprune.run.store import RunStore
from earlyprune.sweeps.executors.fused import fused_specs
from earlyprune.train import modes as modes_module
from earlyprune.train.loop import train
from earlyprune.train.modes import CompileFailed, Modes
from earlyprune.train.optim import Schedule

GPU = H100_KIND
#: The demo preset at batch 1000: 3 steps an epoch on its 3,000 images, 2 epochs.
SHORT = dict(method="snip", sparsity=0.9, epochs=2, batch_size=1000)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        (dict(compile=True, engine="fused"), "compile applies to the solo training loop"),
        (dict(autotune=True, engine="fused", device_kind=GPU), "autotune applies to the solo"),
        (dict(compile=True, world_size=2), "compile is not supported under torchrun"),
    ],
)
def test_unsupported_combinations_are_refused_in_one_line(fields, words):
    with pytest.raises(SpecError, match=words) as caught:
        RunSpec(method="snip", sparsity=0.9, **fields)
    assert "\n" not in str(caught.value)
    RunSpec(method="snip", sparsity=0.9, compile=True, autotune=True, device_kind=GPU)  # solo: ok


def test_fuse_leaves_compiled_and_autotuned_runs_solo():
    specs = [
        RunSpec(method="snip", sparsity=0.9),
        RunSpec(method="snip", sparsity=0.9, compile=True),
        RunSpec(method="snip", sparsity=0.9, autotune=True, device_kind=GPU),
    ]
    assert [s.engine for s in fused_specs(specs, 2)] == ["fused", "solo", "solo"]


def _cli(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_refuses_compile_under_torchrun_and_autotune_on_cpu(tmp_path, capsys, monkeypatch):
    from earlyprune.train import distributed

    store = tmp_path / "runs"
    base = ["run", "--dataset", "fashion-mnist-mini", "--method", "snip", "--sparsity", "0.9"]
    base += ["--store", str(store), "--quiet"]
    code, out, err = _cli([*base, "--device", "cpu", "--autotune"], capsys)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "autotune picks cuDNN kernels on CUDA GPUs" in err
    fake = types.SimpleNamespace(world_size=2, is_main=True, rank=0)  # as under torchrun
    monkeypatch.setattr(distributed.Distributed, "from_env", staticmethod(lambda: fake))
    code, out, err = _cli([*base, "--device", "cpu", "--compile"], capsys)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "compile is not supported under torchrun (world_size 2" in err
    assert not store.exists()


def _tiny_training(modes: Modes) -> None:
    from earlyprune.data import TensorBundle, TensorSplit

    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (8, 1, 8, 8), dtype=torch.uint8, generator=gen)
    y = torch.randint(0, 2, (8,), generator=gen)
    split = TensorSplit(x, y)
    bundle = TensorBundle(
        name="tiny", num_classes=2, mean=(0.5,), std=(0.25,), train=split, test=split
    )
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 2))
    train(model, bundle, Schedule(1, 2, 4, 0.1, ()), seed=0, progress=False, modes=modes)


def test_the_loop_passes_autotune_to_the_numeric_settings(monkeypatch):
    seen = []
    real = modes_module.deterministic

    def recording(device, precision, force=False, autotune=False):
        seen.append(autotune)
        return real(device, precision, force, autotune)

    monkeypatch.setattr(modes_module, "deterministic", recording)
    _tiny_training(Modes())
    _tiny_training(Modes(autotune=True))
    assert seen == [False, True]


def test_a_machine_that_cannot_compile_interrupts_the_run_and_stores_nothing(tmp_path, capsys):
    # No working C++ compiler, as on a machine without one (and no cache to answer instead).
    missing = {"cpp.cxx": (str(tmp_path / "no-such-c++"),), "force_disable_caches": True}
    spec = RunSpec(**SHORT, compile=True)
    store = RunStore(tmp_path / "runs")
    argv = ["run", "--dataset", "fashion-mnist-mini", "--method", "snip", "--sparsity", "0.9"]
    argv += ["--epochs", "2", "--batch-size", "1000", "--compile", "--device", "cpu"]
    with torch._inductor.config.patch(missing):
        with pytest.raises(CompileFailed, match="InvalidCxxCompiler: No working C\\+\\+ compiler"):
            _tiny_training(Modes(compile=True))
        with pytest.raises(RunInterrupted, match="CompileFailed: torch.compile could not build"):
            run(spec, store, progress=False)
        assert store.read_result(spec.run_id) is None  # not a failed run: nothing stored
        assert store.claim_state(spec.run_id) == "free"
        code, _out, err = _cli([*argv, "--store", str(tmp_path / "runs"), "--quiet"], capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert err.startswith(f"earlyprune: run {spec.run_id} interrupted: CompileFailed")
    assert store.read_result(spec.run_id) is None


def _weights(store: RunStore, spec: RunSpec, name: str = "final.pt") -> dict:
    return store.load_tensors(spec.run_id, name)["model"]


def _points(result: dict) -> list[tuple[float, float, float]]:
    return [(p["train_loss"], p["test_loss"], p["test_accuracy"]) for p in result["curve"]]


@pytest.mark.slow
def test_a_compiled_run_trains_the_same_network_and_resumes_after_a_kill(tmp_path):
    compiled, eager = RunSpec(**SHORT, compile=True), RunSpec(**SHORT)
    assert compiled.run_id != eager.run_id
    plain, killed, whole = (RunStore(tmp_path / name) for name in ("plain", "killed", "whole"))
    reference = run(eager, plain, progress=False)
    counters.clear()

    def kill_after_first_epoch(step, *_):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(compiled, killed, callbacks=[kill_after_first_epoch], progress=False)
    halfway = _weights(killed, compiled, "latest.pt")
    resumed = run(compiled, killed, progress=False)  # a new compiled wrapper, from latest.pt
    straight = run(compiled, whole, progress=False)
    assert counters["stats"]["unique_graphs"] >= 2  # trained and evaluated through dynamo
    # The checkpoints hold the plain model: its keys, no torch.compile ``_orig_mod.`` prefix.
    final = _weights(killed, compiled)
    assert list(halfway) == list(final) == list(_weights(plain, eager))
    assert resumed["status"] == straight["status"] == "ok" and len(resumed["curve"]) == 2
    assert _points(resumed) == _points(straight)  # compiled kernels are deterministic on CPU
    assert all(torch.equal(final[k], v) for k, v in _weights(whole, compiled).items())
    mask = killed.load_tensors(compiled.run_id, "mask.pt")
    assert mask and all(bool((final[n][~m] == 0).all()) for n, m in mask.items())
    # Compiled kernels sum in another order: after 6 SGD steps float32 rounding has grown to
    # ~1e-4 (as from switching channels-last off); a wrong mask, LR or BatchNorm mode is ~1e-1.
    for (a, b, c), (x, y, z) in zip(_points(resumed), _points(reference), strict=True):
        assert a == pytest.approx(x, rel=1e-3) and b == pytest.approx(y, rel=1e-3)
        assert abs(c - z) <= 0.005  # 10 of the 2,000 test images
    eager_final = _weights(plain, eager)
    assert max(float((final[k] - eager_final[k]).abs().max()) for k in mask) < 1e-2


def test_compile_wraps_only_when_asked_and_never_ddp():
    net = torch.nn.Linear(2, 2)
    assert modes_module.compiled(net, Modes()) is net
    ddp = torch.nn.parallel.DistributedDataParallel.__new__(
        torch.nn.parallel.DistributedDataParallel
    )
    with pytest.raises(ValueError, match="not supported under torchrun"):
        modes_module.compiled(ddp, Modes(compile=True))


def test_a_run_past_the_recompile_limit_raises_instead_of_running_eager(monkeypatch):
    # dynamo's eager backend (no inductor build); one graph allowed, evaluation needs another
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda net, **kw: real(net, backend="eager", **kw))
    with torch._dynamo.config.patch(recompile_limit=1):
        with pytest.raises(torch._dynamo.exc.FailOnRecompileLimitHit):
            _tiny_training(Modes(compile=True))
