"""An out-of-memory error that repeats at one stage never wedges a sweep (issue 22): the first
two attempts are left to resume (the environment's failure), the third at the same stage is
stored as the run's ``failed`` result, naming memory and the flag that helps."""

from __future__ import annotations

import pytest
import torch

from earlyprune.run.memory import OOM_FILE, stage_of
from earlyprune.run.spec import RunSpec
from earlyprune.run.store import RunStore
from earlyprune.sweeps.grid import run_specs

SCORER = """
import torch


def score(model, batch):
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB\\nmore text")
"""
NET = """
import torch
from torch import nn


class Hungry(nn.Module):
    def __init__(self, num_classes, input_shape):
        super().__init__()
        c, h, w = input_shape
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, num_classes))

    def forward(self, x):
        if torch.is_grad_enabled():  # training only: evaluation fits
            raise MemoryError()
        return self.body(x)


def build(num_classes, input_shape):
    return Hungry(num_classes, input_shape)
"""


def _sweep_until_stored(spec: RunSpec, store: RunStore) -> list[dict | None]:
    """Runs the sweep of one spec again and again (a user resuming it), at most 5 times."""
    seen = []
    for _ in range(5):
        run_specs([spec], store, workers=1, progress=False)
        seen.append(store.read_result(spec.run_id))
        if seen[-1] is not None:
            break
    return seen


def test_a_scorer_out_of_memory_three_times_is_stored_failed(tmp_path):
    (tmp_path / "hungry.py").write_text(SCORER, encoding="utf-8")
    spec = RunSpec(method=f"{tmp_path}/hungry.py:score", sparsity=0.5, epochs=0.1, device="cpu")
    store = RunStore(tmp_path / "store")
    seen = _sweep_until_stored(spec, store)
    assert seen[:2] == [None, None] and len(seen) == 3  # two resumable, the third stored
    result = seen[-1]
    assert result["status"] == "failed"
    first = result["error"].splitlines()
    assert len(first) == 1 and first[0].startswith("RepeatedOutOfMemory: out of memory in scoring")
    assert "--scoring-micro-batch" in result["error"]
    assert not store.path(spec.run_id, OOM_FILE).exists()
    run_specs([spec], store, workers=1, progress=False)  # served: no fourth attempt
    assert store.read_result(spec.run_id) == result


def test_a_network_out_of_memory_in_training_names_the_batch_size(tmp_path):
    (tmp_path / "net.py").write_text(NET, encoding="utf-8")
    spec = RunSpec(model=f"{tmp_path}/net.py:build", epochs=0.1, device="cpu")
    store = RunStore(tmp_path / "store")
    seen = _sweep_until_stored(spec, store)
    assert len(seen) == 3 and seen[-1]["status"] == "failed"
    assert "out of memory in training on 3 attempts" in seen[-1]["error"]
    assert "--batch-size" in seen[-1]["error"] and "--accumulate k" in seen[-1]["error"]


def test_the_count_is_per_stage_and_cleared_at_the_third(tmp_path):
    from earlyprune.run.memory import counted

    store, rid = RunStore(tmp_path / "store"), "0123456789ab"
    try:
        raise torch.OutOfMemoryError("x")
    except torch.OutOfMemoryError as caught:
        exc = caught
    assert stage_of(exc) == "the run"  # raised here: in no earlyprune stage
    store.write_json(rid, OOM_FILE, {"scoring": 2})  # another stage's count is not this one's
    assert counted(store, rid, exc) is None and counted(store, rid, exc) is None
    assert store.read_json(rid, OOM_FILE) == {"scoring": 2, "the run": 2}
    assert "out of memory in the run on 3 attempts" in str(counted(store, rid, exc))
    assert store.read_json(rid, OOM_FILE) is None


@pytest.mark.parametrize("exc", [MemoryError(), torch.OutOfMemoryError("x")])
def test_both_kinds_count(exc):
    from earlyprune.run.memory import is_out_of_memory

    assert is_out_of_memory(exc) and not is_out_of_memory(RuntimeError("x"))


LOADER = """
def arrays():
    raise MemoryError()  # the host cannot hold the dataset
"""


def test_out_of_memory_while_loading_data_is_counted_not_stored_at_once(tmp_path):
    # Loading happens before the run holds its claim; it used to be stored failed at once.
    (tmp_path / "big.py").write_text(LOADER, encoding="utf-8")
    spec = RunSpec(dataset=f"{tmp_path}/big.py:arrays", preset="custom", device="cpu")
    store = RunStore(tmp_path / "store")
    seen = _sweep_until_stored(spec, store)
    assert seen[:2] == [None, None] and len(seen) == 3  # two resumable, the third stored
    assert seen[-1]["status"] == "failed"
    assert "out of memory in loading data on 3 attempts" in seen[-1]["error"]
    assert "free host memory for the dataset" in seen[-1]["error"]
