"""`ep.prune/ep.score(..., micro_batch=k)` and `--scoring-micro-batch k` reach the micro-batched
scorers (issue 22): same masks as one batch where the network has no batch statistics, the
setting out of the run id, and a method without a micro-batched form refused in one line."""

from __future__ import annotations

import pytest
import torch

import earlyprune as ep
from earlyprune.core.errors import SpecError
from earlyprune.methods import micro_batch
from earlyprune.run.pipeline import run
from earlyprune.run.spec import RunSpec
from earlyprune.run.store import RunStore


def _lenet():
    torch.manual_seed(0)
    model = ep.create_model("lenet_300_100", 10).double()
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(24, 1, 28, 28, generator=gen, dtype=torch.float64)
    return model, (x, torch.randint(0, 10, (24,), generator=gen))


@pytest.fixture
def chunk_sizes(monkeypatch) -> list[int]:
    """The micro-batch size of every micro-batched scoring call."""
    sizes: list[int] = []
    real = micro_batch.score_in_micro_batches

    def counting(model, method, batch, mask, seed, size):
        sizes.append(size)
        return real(model, method, batch, mask, seed, size)

    monkeypatch.setattr(micro_batch, "score_in_micro_batches", counting)
    return sizes


@pytest.mark.parametrize("method", ["snip", "grasp"])
def test_prune_in_micro_batches_gives_the_one_batch_mask(method, chunk_sizes):
    model, batch = _lenet()
    whole = ep.prune(model, method, 0.8, batch=batch)
    chunked = ep.prune(model, method, 0.8, batch=batch, micro_batch=5)
    assert chunk_sizes == [5]
    assert all(torch.equal(whole[n], chunked[n]) for n in whole)


def test_score_in_micro_batches(chunk_sizes):
    model, batch = _lenet()
    whole = ep.score(model, "snip", batch)
    chunked = ep.score(model, "snip", batch, micro_batch=7)
    assert chunk_sizes == [7]
    for n in whole:
        torch.testing.assert_close(chunked[n], whole[n], rtol=1e-9, atol=1e-12)


def test_a_method_without_micro_batched_form_is_refused_at_once():
    model, batch = _lenet()

    def mine(model, batch):
        return {n: p.abs() for n, p in ep.prunable(model).items()}

    with pytest.raises(ValueError, match="cannot score in micro-batches"):
        ep.prune(model, mine, 0.5, batch=batch, micro_batch=4)
    with pytest.raises(ValueError, match="positive integer"):
        ep.score(model, "snip", batch, micro_batch=0)


def test_the_setting_is_in_the_run_id_and_checked():
    # With BatchNorm, chunks are normalized by their own statistics: other scores, another id.
    base = RunSpec(method="snip", sparsity=0.5)
    assert base.replace(scoring_micro_batch=16).run_id != base.run_id
    assert base.replace(scoring_micro_batch=None).run_id == base.run_id  # unset: ids as before
    with pytest.raises(SpecError, match="scoring_micro_batch"):
        base.replace(scoring_micro_batch=0)


def test_the_run_recipe_scores_in_micro_batches(tmp_path, chunk_sizes):
    s = RunSpec(method="snip", sparsity=0.5, epochs=0.1, device="cpu", scoring_micro_batch=32)
    assert run(s, RunStore(tmp_path / "s"), progress=False)["status"] == "ok"
    assert chunk_sizes == [32]
