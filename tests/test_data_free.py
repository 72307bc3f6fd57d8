"""Data-free methods need no batch where the network's input shape is known (ep.create_model)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import earlyprune as ep
from earlyprune.methods.scoring import METHODS

DATA_FREE = [n for n in ep.list_methods() if not METHODS.get(n).needs_batch]
DETERMINISTIC = {"magnitude", "lamp", "synflow", "synflow_l2"}  # no random draw at all


def rounds(method: str) -> int:
    return min(METHODS.get(method).rounds, 3)


def same(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)


def test_the_data_free_methods_are_the_expected_ones():
    assert {"synflow", "ntk_sap", "random", "magnitude", "phew", "synflow_l2"} <= set(DATA_FREE)


@pytest.mark.parametrize("method", DATA_FREE)
def test_no_batch_needed_and_reproducible_for_a_seed(method):
    model = ep.create_model("smallcnn", 10, seed=0)
    first = ep.prune(model, method, 0.9, seed=3, rounds=rounds(method))
    again = ep.prune(model, method, 0.9, seed=3, rounds=rounds(method))
    other = ep.prune(model, method, 0.9, seed=4, rounds=rounds(method))
    assert same(first, again)
    assert same(first, other) == (method in DETERMINISTIC)
    assert ep.score(model, method).keys() == first.keys()


@pytest.mark.parametrize("method", ["synflow", "ntk_sap", "phew", "synflow_l2"])
def test_without_a_batch_equals_with_a_run_sized_batch(method):
    """The stand-in has the shape of a run's scoring batch (10 per class), so the masks agree."""
    model = ep.create_model("smallcnn", 10, seed=0)
    x, y = torch.randn(100, 1, 28, 28), torch.arange(100) % 10
    with_batch = ep.prune(model, method, 0.9, batch=(x, y), seed=1, rounds=rounds(method))
    assert same(ep.prune(model, method, 0.9, seed=1, rounds=rounds(method)), with_batch)


def test_a_linear_first_network_needs_no_batch_either():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 3))
    x, y = torch.randn(30, 6), torch.arange(30) % 3
    assert same(
        ep.prune(model, "ntk_sap", 0.5, seed=2), ep.prune(model, "ntk_sap", 0.5, (x, y), seed=2)
    )


@pytest.mark.parametrize("method", ["synflow", "ntk_sap", "phew", "synflow_l2"])
def test_an_unknown_input_shape_is_one_clear_value_error(method):
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.LazyLinear(3))
    model(torch.zeros(1, 1, 6, 6))  # materialize the lazy layer: a plain conv net, shape unknown
    with pytest.raises(ValueError, match="input shape.*batch=") as err:
        ep.prune(model, method, 0.5)
    assert "\n" not in str(err.value)


def test_data_methods_still_refuse_a_missing_batch():
    model = ep.create_model("smallcnn", 10, seed=0)
    with pytest.raises(ValueError, match="needs a batch"):
        ep.prune(model, "snip", 0.5)
