"""RunSpec: pinned run ids, defaults out of the hash, round trips and one error per bad field."""

from __future__ import annotations

import dataclasses
import math

import pytest

from earlyprune.core.errors import SpecError
from earlyprune.run.spec import (
    BASELINES,
    DEFAULT_PRESET,
    DENSE,
    PRESETS,
    RunSpec,
    canonical_json,
    paper_sparsities,
)

# Computed once and written out literally: a rename, a new hashed default or a change to the
# canonical JSON would silently orphan every stored run, so any such change must fail here.
PINNED = [
    ({}, "44136fa355b3"),
    ({"method": "snip", "sparsity": 0.9, "epochs": 0.25}, "86b7ed5a44cc"),
    ({"method": "synflow", "sparsity": 0.5, "seed": 3}, "e66d466e42d4"),
    (
        {
            "dataset": "cifar10",
            "model": "resnet20",
            "preset": "resnet20_cifar10",
            "method": "ltr",
            "sparsity": 0.738,
            "ablation": "shuffle",
        },
        "f525317274e8",
    ),
    (
        {"method": "magnitude", "sparsity": 0.5, "prune_step": 20, "ablation": "invert"},
        "d242dabfc18a",
    ),
]


@pytest.mark.parametrize(("fields", "run_id"), PINNED)
def test_run_ids_are_pinned(fields, run_id):
    assert RunSpec(**fields).run_id == run_id


def test_a_spec_with_every_field_at_its_default_hashes_nothing():
    assert canonical_json(RunSpec()) == "{}"
    # Spelling a default out explicitly is the same run.
    assert RunSpec(seed=0, scope="global", ablation="none").run_id == RunSpec().run_id


def test_every_field_has_a_default_so_new_fields_cannot_rename_old_runs():
    for f in dataclasses.fields(RunSpec):
        assert f.default is not dataclasses.MISSING, f"{f.name} has no default"
        assert f.name not in canonical_json(RunSpec())


def test_canonical_json_holds_exactly_the_non_default_fields_sorted():
    spec = RunSpec(method="snip", sparsity=0.9, epochs=0.25)
    assert canonical_json(spec) == '{"epochs":0.25,"method":"snip","sparsity":0.9}'


def test_device_is_not_part_of_the_run_id():
    base = RunSpec(method="snip", sparsity=0.9)
    assert base.replace(device="cpu").run_id == base.run_id
    assert base.replace(device="cuda:1").run_id == base.run_id
    assert "device" not in canonical_json(base.replace(device="cpu"))


def test_allow_disconnected_is_a_permission_not_part_of_the_run_id():
    base = RunSpec(method="snip", sparsity=0.9)
    assert base.replace(allow_disconnected=True).run_id == base.run_id


def test_every_other_field_changes_the_run_id():
    base = RunSpec(method="snip", sparsity=0.9)
    changes = {
        "dataset": "mnist",
        "model": "lenet_300_100",
        "preset": "lenet_mnist",
        "method": "grasp",
        "sparsity": 0.8,
        "prune_step": 5,
        "rounds": 3,
        "scope": "layer",
        "ablation": "shuffle",
        "seed": 1,
        "epochs": 2.0,
        "init": "normal",
        "bn_gamma": "one",
        "scoring_per_class": 5,
        "precision": "bf16",
        "channels_last": False,
        "bias_init": "zero",
        "allocation": "erk",
        "placement": "magnitude",
        "structure": "fanin",
        "lr": 0.05,
        "batch_size": 64,
        "momentum": 0.8,
        "weight_decay": 5e-4,
        "milestones": (1.0,),
        "gamma": 0.2,
        "optimizer": "adamw",
        "nesterov": False,
        "warmup_epochs": 0.5,
        "label_smoothing": 0.1,
        "threads": 2,
        "world_size": 2,
        "engine": "fused",  # fused numbers are not solo numbers bit for bit (issue 23)
        "device_kind": "cuda-sm90-nvidia-h100-80gb-hbm3",  # a GPU computes other numbers
        "compile": True,  # compiled kernels round differently (issue 22)
        "accumulate": 2,  # BatchNorm statistics per micro-batch
        "scoring_micro_batch": 16,  # likewise, for the scores (issue 22)
    }
    # Where a user's file lies is not its identity (its content hash is, in model/dataset);
    # IMP's levels and level_fraction are checked in tests/test_imp.py (they need method imp).
    unhashed = {f.name for f in dataclasses.fields(RunSpec) if not f.metadata.get("hash", True)}
    assert unhashed == {
        "device",
        "model_file",
        "dataset_file",
        "allow_disconnected",
        "method_file",
        "allocation_file",
        "placement_file",
    }
    # Fields that apply only to some methods, each changed on a base where it applies.
    rigl, gmp = RunSpec(method="rigl", sparsity=0.9), RunSpec(method="gmp", sparsity=0.9)
    specific = {
        "drop_fraction": (rigl, 0.5),
        "update_interval": (gmp, 7),
        "update_start": (gmp, 3),
        "update_end": (gmp, 40),
        "initial_sparsity": (gmp, 0.1),
        "autotune": (RunSpec(device_kind="cuda-sm90-nvidia-h100-80gb-hbm3"), True),  # CUDA only
    }
    # rewind_step applies to ltr/imp only: checked in test_hparams.py.
    hashed = (
        {f.name for f in dataclasses.fields(RunSpec)}
        - unhashed
        - {"levels", "level_fraction", "rewind_step"}
    )
    assert set(changes) | set(specific) == hashed, "a new field needs a line here"
    ids = {base.run_id, rigl.run_id, gmp.run_id}
    for name, value in changes.items():
        ids.add(base.replace(**{name: value}).run_id)
    for name, (on, value) in specific.items():
        ids.add(on.replace(**{name: value}).run_id)
    assert len(ids) == len(changes) + len(specific) + 3


def test_integral_epochs_are_one_run_whatever_their_type():
    # The CLI parses --epochs as a float, a TOML sweep may give an int: same experiment, same id.
    assert RunSpec(epochs=1).run_id == RunSpec(epochs=1.0).run_id
    assert RunSpec(epochs=2).to_dict() == RunSpec(epochs=2.0).to_dict()


def test_to_dict_from_dict_round_trip():
    spec = RunSpec(method="ltr", sparsity=0.5, prune_step=3, seed=2, device="cpu")
    again = RunSpec.from_dict(spec.to_dict())
    assert again == spec and again.run_id == spec.run_id


def test_from_dict_rejects_unknown_fields_naming_the_valid_ones():
    with pytest.raises(SpecError, match="sparsityy") as info:
        RunSpec.from_dict({"method": "snip", "sparsityy": 0.9})
    assert "sparsity" in str(info.value).split("valid fields")[1]


def test_dense_spec_keeps_identity_fields_and_drops_pruning():
    spec = RunSpec(method="snip", sparsity=0.9, seed=4, epochs=0.5, scope="layer", rounds=2)
    dense = spec.dense_spec()
    assert dense == RunSpec(seed=4, epochs=0.5)
    normal = spec.replace(ablation="init_normal").dense_spec()
    assert normal.init == "normal" and normal.ablation == "none"
    assert normal.run_id != dense.run_id


def test_spec_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        RunSpec().seed = 3  # type: ignore[misc]


BAD_FIELDS = [
    ({"dataset": "imagenet21k"}, "dataset"),
    ({"model": "resnet1000"}, "model"),
    ({"preset": "nope"}, "preset"),
    ({"method": "sniip", "sparsity": 0.5}, "method"),
    ({"method": "snip", "sparsity": 0.5, "ablation": "flip"}, "ablation"),
    ({"method": "snip", "sparsity": 0.5, "scope": "local"}, "scope"),
    ({"init": "xavier"}, "init"),
    ({"bn_gamma": "zeros"}, "bn_gamma"),
    ({"precision": "fp8"}, "precision"),
    ({"method": "snip", "sparsity": 1.0}, "sparsity"),
    ({"method": "snip", "sparsity": -0.1}, "sparsity"),
    ({"method": "snip", "sparsity": math.nan}, "sparsity"),
    ({"method": "snip", "sparsity": "0.5"}, "sparsity"),
    ({"method": "snip", "sparsity": True}, "sparsity"),
    ({"sparsity": 0.5}, "sparsity must be 0"),
    ({"method": "snip"}, "use 'dense'"),
    ({"ablation": "shuffle"}, "needs a pruning method"),
    ({"method": "snip", "sparsity": 0.5, "prune_step": -1}, "prune_step"),
    ({"method": "snip", "sparsity": 0.5, "prune_step": 1.5}, "prune_step"),
    ({"method": "snip", "sparsity": 0.5, "prune_step": True}, "prune_step"),
    ({"method": "snip", "sparsity": 0.5, "rounds": 0}, "rounds"),
    ({"seed": -1}, "seed"),
    ({"seed": "0"}, "seed"),
    ({"scoring_per_class": 0}, "scoring_per_class"),
    ({"epochs": 0}, "epochs"),
    ({"epochs": -1.0}, "epochs"),
    ({"epochs": math.inf}, "epochs"),
    ({"epochs": math.nan}, "epochs"),
    ({"epochs": True}, "epochs"),
    ({"channels_last": "yes"}, "channels_last"),
    ({"device": ""}, "device"),
    ({"device": 0}, "device"),
]


@pytest.mark.parametrize(("fields", "needle"), BAD_FIELDS, ids=[str(f) for f, _ in BAD_FIELDS])
def test_each_bad_field_is_a_spec_error_naming_it(fields, needle):
    with pytest.raises(SpecError, match=needle):
        RunSpec(**fields)


def test_unknown_names_list_the_valid_choices():
    with pytest.raises(SpecError, match="choose one of: .*snip") as info:
        RunSpec(method="sniip", sparsity=0.5)
    assert all(b in str(info.value) for b in (DENSE, *BASELINES))


def test_replace_validates_too():
    with pytest.raises(SpecError):
        RunSpec(method="snip", sparsity=0.5).replace(sparsity=1.5)


def test_presets_and_defaults_are_consistent():
    for dataset, preset in DEFAULT_PRESET.items():
        p = PRESETS.get(preset)
        assert p.dataset == dataset
        RunSpec(dataset=dataset, model=p.model, preset=p.name)  # every default is valid
        assert list(p.milestones) == sorted(p.milestones) and p.milestones[-1] < p.epochs
    demo = PRESETS.get("demo")
    assert (RunSpec().preset, RunSpec().model, RunSpec().dataset) == (
        "demo",
        demo.model,
        demo.dataset,
    )


def test_paper_sparsity_grid():
    grid = paper_sparsities()
    assert len(grid) == 19 and grid[0] == 0.0 and grid[-1] == pytest.approx(0.981986)
    assert [round(100 * s, 1) for s in grid[:5]] == [0.0, 20.0, 36.0, 48.8, 59.0]
    assert paper_sparsities(3, 4) == grid[3:5]
