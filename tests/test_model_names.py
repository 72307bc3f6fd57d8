"""smallcnn and lenet_300_100 name their layers, and still read checkpoints from before."""

from __future__ import annotations

import pytest
import torch

import earlyprune as ep


@pytest.mark.parametrize("name", ["smallcnn", "lenet_300_100"])
def test_named_small_models_load_checkpoints_with_positional_names(name):
    """Stores written before the layers had names (``0.weight``) still load, weight for weight."""
    model = ep.create_model(name, 10)
    old = {}
    positions = {n: i for i, (n, _) in enumerate(model.named_children())}
    for key, value in model.state_dict().items():
        layer, rest = key.split(".", 1)
        old[f"{positions[layer]}.{rest}"] = value.clone() + 1
    fresh = ep.create_model(name, 10)
    fresh.load_state_dict(old)
    assert all(
        torch.equal(fresh.state_dict()[k], v + 0)
        for k, v in zip(model.state_dict(), old.values(), strict=True)
    )
    assert list(ep.prunable(fresh))[0] in ("conv1.weight", "fc1.weight")


def test_named_models_pickle():
    import pickle

    model = ep.create_model("smallcnn", 10)
    copy = pickle.loads(pickle.dumps(model))
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), copy.state_dict().values(), strict=True)
    )
