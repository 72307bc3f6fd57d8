"""``accumulate`` as a run field: its own run id, refused where it cannot apply, resumable."""

from __future__ import annotations

import pytest
import torch

from earlyprune.core.errors import SpecError
from earlyprune.run.pipeline import run
from earlyprune.run.spec import PRESETS, Preset, RunSpec
from earlyprune.run.store import RunStore
from earlyprune.sweeps.executors.fused import fused_specs

TINY = "accumulate_tiny"
SPE = 10  # 320 images, batch 32


@pytest.fixture(scope="module", autouse=True)
def tiny_preset_one_thread():
    PRESETS.add(
        TINY,
        Preset(
            TINY,
            "smallcnn",
            "fashion-mnist-mini",
            epochs=2,
            batch_size=32,
            lr=0.05,
            milestones=(1,),
            rewind_step=5,
            train_subset=320,
            test_subset=200,
        ),
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    PRESETS.remove(TINY)


def test_accumulation_is_in_the_run_id_only_when_set():
    plain = RunSpec(method="snip", sparsity=0.9)
    assert RunSpec(method="snip", sparsity=0.9, accumulate=1).run_id == plain.run_id
    two = RunSpec(method="snip", sparsity=0.9, accumulate=2)
    assert two.run_id != plain.run_id and two.dense_spec().accumulate == 2
    assert two.dense_spec().run_id != plain.dense_spec().run_id


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"accumulate": 3}, "does not divide the batch size 128"),  # the demo preset's batch
        ({"accumulate": 5, "batch_size": 96}, "does not divide the batch size 96"),
        ({"accumulate": 256}, "does not divide the batch size 128"),
        ({"accumulate": 2, "engine": "fused", "method": "snip", "sparsity": 0.9}, "fused"),
    ],
)
def test_accumulation_that_cannot_apply_is_refused_in_one_line(fields, words):
    with pytest.raises(SpecError, match=words) as err:
        RunSpec(**fields)
    assert len(str(err.value).splitlines()) == 1


def test_a_divisor_of_the_resolved_batch_size_is_accepted():
    assert RunSpec(accumulate=4).accumulate == 4  # 128 / 4
    assert RunSpec(accumulate=3, batch_size=96).accumulate == 3


def test_fused_sweeps_leave_accumulating_runs_solo():
    specs = [RunSpec(method="snip", sparsity=0.9, accumulate=a) for a in (1, 2)]
    engines = [s.engine for s in fused_specs(specs, 4)]
    assert engines == ["fused", "solo"]


def test_a_killed_accumulating_run_resumes_as_if_never_interrupted(tmp_path):
    spec = RunSpec(preset=TINY, device="cpu", accumulate=2)
    store, other = RunStore(tmp_path / "a"), RunStore(tmp_path / "b")

    def kill_after_first_epoch(step, *_):
        if step == SPE:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(spec, store, callbacks=[kill_after_first_epoch], progress=False)
    assert store.load_tensors(spec.run_id, "latest.pt")["step"] == SPE
    resumed = run(spec, store, progress=False)
    straight = run(spec, other, progress=False)
    assert resumed["curve"] == straight["curve"] and len(resumed["curve"]) == 2
    a = store.load_tensors(spec.run_id, "final.pt")["model"]
    b = other.load_tensors(spec.run_id, "final.pt")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)
    whole = run(spec.replace(accumulate=1), other, progress=False)  # BatchNorm: other numbers
    assert whole["curve"] != straight["curve"]
