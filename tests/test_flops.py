"""earlyprune.masks.flops against multiply-adds counted by hand on small networks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import earlyprune as ep
from earlyprune.masks.flops import count_flops


def _mask(model: nn.Module, kept: dict[str, int]) -> dict[str, torch.Tensor]:
    """A mask keeping the first ``kept[name]`` weights of each named layer (all of the rest)."""
    out = {}
    for name, weight in ep.prunable(model).items():
        flat = torch.zeros(weight.numel(), dtype=torch.bool)
        flat[: kept.get(name, weight.numel())] = True
        out[name] = flat.reshape(weight.shape)
    return out


def test_conv_then_linear_by_hand():
    # Conv 1→2, 3×3, stride 2, pad 1 on 4×4: 2×2 output positions, 18 weights → 72 MACs;
    # Linear 8→3: 24 MACs.
    model = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2, padding=1), nn.Flatten(), nn.Linear(8, 3))
    dense = count_flops(model, (1, 4, 4))
    assert dense["per_layer"] == {
        "0.weight": {"dense": 72, "pruned": 72},
        "2.weight": {"dense": 24, "pruned": 24},
    }
    assert dense["dense"] == dense["pruned"] == 96
    # Keep 5 conv weights (5 × 4 positions) and 7 linear weights.
    pruned = count_flops(model, (1, 4, 4), _mask(model, {"0.weight": 5, "2.weight": 7}))
    assert pruned["dense"] == 96 and pruned["pruned"] == 5 * 4 + 7
    assert list(pruned["per_layer"]) == ["0.weight", "2.weight"]  # network order


def test_grouped_dilated_and_1d_3d_convolutions():
    # Groups: each of the 4×3×3 outputs takes 2 input channels × 9 taps = 18 MACs → 648.
    grouped = nn.Conv2d(4, 4, 3, groups=2, bias=False)
    assert count_flops(grouped, (4, 5, 5))["dense"] == 4 * 3 * 3 * 18
    # Dilation 2 on 7×7 with a 3×3 kernel: 3×3 outputs, 9 weights each.
    dilated = nn.Conv2d(1, 1, 3, dilation=2)
    assert count_flops(dilated, (1, 7, 7))["dense"] == 9 * 9
    # Conv1d 2→3, kernel 3, length 10 → 8 positions × 18 weights.
    assert count_flops(nn.Conv1d(2, 3, 3), (2, 10))["dense"] == 8 * 18
    # Conv3d 1→2, kernel 2 on 3×3×3 → 2×2×2 positions × 16 weights.
    assert count_flops(nn.Conv3d(1, 2, 2), (1, 3, 3, 3))["dense"] == 8 * 16


class _Twice(nn.Module):
    """One linear layer applied twice, and to a sequence of 5 vectors."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.fc(x))


def test_a_module_called_twice_counts_twice_and_sequences_count_per_position():
    assert count_flops(_Twice(), (4,))["dense"] == 2 * 16
    assert count_flops(_Twice(), (5, 4))["dense"] == 2 * 5 * 16


def test_smallcnn_matches_its_documented_count():
    # conv1 1→16 5×5 /2: 400 w × 14² ; conv2 16→32 3×3 /2: 4608 w × 7²; fc 1568→64; fc 64→10.
    model = ep.create_model("smallcnn", 10)
    expected = 400 * 196 + 4608 * 49 + 1568 * 64 + 64 * 10
    assert count_flops(model, (1, 28, 28))["dense"] == expected == 405_184


def test_lenet_counts_its_weights():
    model = ep.create_model("lenet_300_100", 10)
    assert count_flops(model, (1, 28, 28))["dense"] == 784 * 300 + 300 * 100 + 100 * 10


def test_counting_leaves_the_model_as_it_was():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 2))
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count_flops(model, (1, 4, 4))
    assert model.training and all(m.training for m in model.modules())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN statistics untouched
    assert not model[0]._forward_hooks  # hooks removed


def test_bad_masks_are_value_errors():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="not prunable"):
        count_flops(model, (4,), {"nope.weight": torch.ones(2, 4, dtype=torch.bool)})
    with pytest.raises(ValueError, match="shape"):
        count_flops(model, (4,), {"1.weight": torch.ones(4, 2, dtype=torch.bool)})


def test_a_run_records_its_flops(tmp_path):
    """``result.json`` holds the counts of the stored mask, recomputed here by hand."""
    import dataclasses

    from earlyprune.run.pipeline import run
    from earlyprune.run.spec import PRESETS, RunSpec
    from earlyprune.run.store import RunStore

    tiny = dataclasses.replace(
        PRESETS.get("demo"),
        name="test_flops_tiny",
        epochs=1,
        batch_size=64,
        milestones=(),
        train_subset=128,
        test_subset=64,
    )
    PRESETS.add(tiny.name, tiny)
    try:
        store = RunStore(tmp_path)
        spec = RunSpec(preset=tiny.name, method="magnitude", sparsity=0.9)
        result = run(spec, store, progress=False)
    finally:
        PRESETS.remove(tiny.name)
    assert result["status"] == "ok"
    mask = store.load_tensors(spec.run_id, "mask.pt")
    positions = (196, 49, 1, 1)  # smallcnn on 28×28: conv1 14², conv2 7², then two linears
    expected = [int(m.sum()) * p for m, p in zip(mask.values(), positions, strict=True)]
    flops = result["flops"]
    assert flops["dense"] == 405_184
    assert [v["pruned"] for v in flops["per_layer"].values()] == expected
    # Global magnitude keeps the early convolutions denser: FLOPs fall less than weights do.
    assert flops["pruned"] == sum(expected) < flops["dense"]
    assert list(flops["per_layer"]) == list(result["layer_density"])


def test_a_failing_count_is_recorded_as_missing_not_as_a_failed_run():
    from earlyprune.masks.flops import flops_record

    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with pytest.warns(RuntimeWarning, match="FLOPs not counted"):
        assert flops_record(model, (3, 3), None) is None  # 9 inputs into a 4-input layer
    assert flops_record(model, (4,), None)["dense"] == 8
