"""Your own network (``--model FILE.py:F``) and data (``--dataset npz:FILE``, ``FILE.py:F``):
checks of the files, run ids that follow the files' content, workers, initialization, and the
one-signature scoring functions of ``ep.prune`` / ``ep.score``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import earlyprune as ep
from earlyprune import cli
from earlyprune.core.errors import DatasetError, SpecError
from earlyprune.data import DATASETS
from earlyprune.data.user import bundle_from_arrays
from earlyprune.masks.mask import prunable
from earlyprune.models import MODELS
from earlyprune.run import stages
from earlyprune.run.spec import RunSpec

NET = """
from torch import nn

def build(num_classes, input_shape):
    c, h, w = input_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, 16), nn.ReLU(),
                         nn.Linear(16, num_classes))

def wrong_output(num_classes, input_shape):
    c, h, w = input_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, num_classes + 1))
"""


def arrays(n_train: int = 60, n_test: int = 30, shape=(6, 6, 3), classes: int = 3, seed: int = 0):
    g = np.random.default_rng(seed)
    return {
        "x_train": g.integers(0, 256, (n_train, *shape), dtype=np.uint8),
        "y_train": np.arange(n_train) % classes,
        "x_test": g.integers(0, 256, (n_test, *shape), dtype=np.uint8),
        "y_test": np.arange(n_test) % classes,
    }


@pytest.fixture
def files(tmp_path):
    (tmp_path / "net.py").write_text(NET)
    np.savez(tmp_path / "data.npz", **arrays())
    return tmp_path


# ---- bad data ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a.pop("y_test"), "array 'y_test' is missing"),
        (lambda a: a.update(x_train=a["x_train"][:, :, :, :, None]), "x_train must be images"),
        (lambda a: a.update(x_test=a["x_test"][:, 0, 0, 0]), "x_test must be images"),
        (lambda a: a.update(y_train=a["y_train"] - 1), "y_train holds label -1"),
        (lambda a: a.update(y_test=a["y_test"] + 5), "y_test holds label 7"),
        (lambda a: a.update(num_classes=np.int64(2)), "out of range for num_classes = 2"),
        (lambda a: a.update(y_train=a["y_train"].astype(np.float32)), "y_train must hold integer"),
        (lambda a: a.update(y_test=a["y_test"][:-1]), "y_test has 29 labels but x_test has 30"),
        (lambda a: a.update(x_train=a["x_train"].astype(np.int32)), "uint8 (0–255) or floating"),
        (lambda a: a.update(x_test=a["x_test"][:, :, :4]), "x_test images are (3, 6, 4)"),
        (lambda a: a.update(y_train=a["y_train"][:, None]), "y_train must be one label per image"),
        (
            lambda a: a.update(y_train=np.zeros(60, np.int64), y_test=np.zeros(30, np.int64)),
            "at least 2",
        ),
    ],
)
def test_bad_arrays_name_the_array_and_what_was_expected(change, message):
    a = arrays()
    change(a)
    with pytest.raises(DatasetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        bundle_from_arrays(a, "mine", "mine.npz")


def test_a_bad_npz_file_is_one_line_exit_2_and_nothing_written(files, capsys):
    bad = arrays()
    bad["y_train"] = bad["y_train"].astype(np.float64)
    np.savez(files / "bad.npz", **bad)
    store = files / "runs"
    argv = [
        "run",
        "--dataset",
        f"npz:{files / 'bad.npz'}",
        "--method",
        "snip",
        "--sparsity",
        "0.5",
        "--store",
        str(store),
        "--device",
        "cpu",
    ]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "y_train must hold integer class labels, got float64" in err
    assert not store.exists()
    (files / "junk.npz").write_bytes(b"not a zip")
    argv[2] = f"npz:{files / 'junk.npz'}"
    assert cli.main(argv) == 2 and "cannot read it as an .npz file" in capsys.readouterr().err


# ---- layouts and normalization ------------------------------------------------------------------
def test_nhwc_nchw_and_hw_layouts_give_the_same_images_and_train_set_normalization():
    a = arrays()
    nhwc = bundle_from_arrays(a, "a", "a")
    nchw = bundle_from_arrays(
        {
            **a,
            "x_train": a["x_train"].transpose(0, 3, 1, 2),
            "x_test": a["x_test"].transpose(0, 3, 1, 2),
        },
        "b",
        "b",
    )
    assert nhwc.input_shape == nchw.input_shape == (3, 6, 6) and nhwc.num_classes == 3
    assert torch.equal(nhwc.train.images, nchw.train.images)
    pixels = a["x_train"].astype(np.float64) / 255  # the training split only, per channel
    assert np.allclose(nhwc.mean, pixels.mean(axis=(0, 1, 2)))
    assert np.allclose(nhwc.std, pixels.std(axis=(0, 1, 2)))
    gray = bundle_from_arrays(
        {**a, "x_train": a["x_train"][..., 0], "x_test": a["x_test"][..., 0]}, "c", "c"
    )
    assert gray.input_shape == (1, 6, 6)


def test_float_images_are_normalized_to_zero_mean_unit_std_on_the_training_set():
    a = arrays()
    floats = {
        **a,
        "x_train": a["x_train"].astype(np.float32) * 3 - 7,
        "x_test": a["x_test"].astype(np.float32),
    }
    bundle = bundle_from_arrays(floats, "f", "f")
    x, _ = bundle.train_examples(torch.arange(len(bundle.train)))
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(x.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)
    # The same images as uint8 give the same normalized inputs (the scale cancels).
    u8, _ = bundle_from_arrays(a, "u", "u").train_examples(torch.arange(len(bundle.train)))
    assert torch.allclose(x, u8, atol=1e-4)


# ---- run ids follow the content -----------------------------------------------------------------
def test_run_ids_follow_file_content_not_location(files):
    spec = RunSpec(
        model=f"{files}/net.py:build",
        dataset=f"npz:{files}/data.npz",
        method="snip",
        sparsity=0.5,
        preset="custom",
    )
    assert spec.model.startswith("net:build@") and spec.dataset.startswith("npz:data@")
    assert spec.model_file == f"{files}/net.py:build" and spec.model_file in repr(spec)
    assert "model_file" not in spec.run_id and files.name not in ep.spec.canonical_json(spec)
    moved = files / "moved"
    moved.mkdir()
    (moved / "net.py").write_text(NET)
    np.savez(moved / "data.npz", **arrays())
    again = RunSpec(
        model=f"{moved}/net.py:build",
        dataset=f"npz:{moved}/data.npz",
        method="snip",
        sparsity=0.5,
        preset="custom",
    )
    assert again.run_id == spec.run_id  # same bytes elsewhere: the same experiment
    (moved / "net.py").write_text(NET + "\n# an edit\n")
    np.savez(moved / "data.npz", **arrays(seed=1))
    edited = RunSpec(
        model=f"{moved}/net.py:build",
        dataset=f"npz:{moved}/data.npz",
        method="snip",
        sparsity=0.5,
        preset="custom",
    )
    assert edited.model != spec.model and edited.dataset != spec.dataset
    assert edited.run_id != spec.run_id
    # A process that has not seen the file (a worker) registers it from the spec's location;
    # a file edited since the spec was made is refused.
    MODELS.remove(spec.model)
    DATASETS.remove(spec.dataset)
    assert stages.prepare(spec).bundle.num_classes == 3 and spec.model in MODELS
    MODELS.remove(edited.model)
    (moved / "net.py").write_text(NET + "\n# edited again\n")
    with pytest.raises(SpecError, match="changed since this run was specified"):
        stages.prepare(edited)


def test_user_networks_get_earlyprunes_initializer(files):
    spec = RunSpec(
        model=f"{files}/net.py:build",
        dataset=f"npz:{files}/data.npz",
        preset="custom",
        device="cpu",
    )
    setup = stages.prepare(spec)
    he = stages.fresh_model(setup)
    normal = stages.fresh_model(stages.prepare(spec.replace(init="normal")))
    first = prunable(he)["1.weight"].detach()  # Linear(108, 16): He normal std sqrt(2/108) = 0.136
    assert abs(float(first.std()) - (2 / 108) ** 0.5) < 0.02  # torch's default would be ≈ 0.056
    assert abs(float(prunable(normal)["1.weight"].detach().std()) - 1.0) < 0.1
    assert torch.equal(first, prunable(stages.fresh_model(setup))["1.weight"].detach())  # seeded


def test_a_network_with_the_wrong_output_is_one_line_exit_2(files, capsys):
    argv = [
        "run",
        "--model",
        f"{files}/net.py:wrong_output",
        "--dataset",
        f"npz:{files}/data.npz",
        "--method",
        "snip",
        "--sparsity",
        "0.5",
        "--store",
        str(files / "runs"),
        "--device",
        "cpu",
    ]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "must return (batch, 3) logits for 3 classes, got (2, 4)" in err
    assert not (files / "runs").exists()
    argv[2] = f"{files}/net.py:nope"
    assert cli.main(argv) == 2 and "has no function 'nope'" in capsys.readouterr().err


def test_a_loader_may_return_arrays_or_a_bundle(files):
    (files / "loader.py").write_text(
        "import numpy as np\nimport earlyprune as ep\n"
        "def arrays():\n"
        "    g = np.random.default_rng(0)\n"
        "    x = g.random((40, 1, 5, 5)).astype(np.float32)\n"
        "    return x, np.arange(40) % 2, x[:10], np.arange(10) % 2\n"
        "def bundle():\n"
        "    return ep.load_dataset('fashion-mnist-mini')\n"
        "def broken():\n"
        "    return [1, 2]\n"
    )
    spec = RunSpec(dataset=f"{files}/loader.py:arrays", preset="custom")
    assert spec.dataset.startswith("loader:arrays@")
    got = ep.load_dataset(spec.dataset)
    assert got.input_shape == (1, 5, 5) and got.num_classes == 2 and len(got.train) == 40
    mini = ep.load_dataset(RunSpec(dataset=f"{files}/loader.py:bundle", preset="custom").dataset)
    assert mini.num_classes == 10
    with pytest.raises(DatasetError, match="must return a DataBundle"):
        ep.load_dataset(RunSpec(dataset=f"{files}/loader.py:broken", preset="custom").dataset)


# ---- one scoring-function signature --------------------------------------------------------------
def test_prune_and_score_take_a_function_in_either_signature():
    model = ep.create_model("smallcnn", 10, seed=0)
    seen = []

    def full(model, batch, mask, seed):
        seen.append((sum(int(m.sum()) for m in mask.values()), seed))
        return {n: w.detach().abs() for n, w in ep.prunable(model).items()}

    def short(model, batch):
        return {n: w.detach().abs() for n, w in ep.prunable(model).items()}

    mask = ep.prune(model, full, 0.9, rounds=3, seed=7)
    # Independent: the 90 % smallest |w| overall, by numpy.
    mags = np.concatenate([w.detach().abs().flatten().numpy() for w in prunable(model).values()])
    n = mags.size
    keep = np.zeros(n, bool)
    keep[np.argsort(mags, kind="stable")[round(0.9 * n) :]] = True
    assert (np.concatenate([m.flatten().numpy() for m in mask.values()]) == keep).all()
    # The full form sees the current mask each round (3 rounds, shrinking) and the seed.
    assert [s for _, s in seen] == [7, 7, 7] and seen[0][0] == n
    assert seen[0][0] > seen[1][0] > seen[2][0] > n - round(0.9 * n)
    short_mask = ep.prune(model, short, 0.9)
    assert all(torch.equal(mask[k], short_mask[k]) for k in mask)
    scores = ep.score(model, short)
    first = next(iter(prunable(model)))
    assert torch.equal(scores[first], prunable(model)[first].detach().abs())
    with pytest.raises(ValueError, match=r"\(model, batch, mask, seed\) or \(model, batch\)"):
        ep.prune(model, lambda model: {}, 0.5)


def test_an_npz_file_edited_after_registration_is_not_read_under_the_old_name(files):
    np.savez(files / "fresh.npz", **arrays(seed=5))  # content no other test registered
    spec = RunSpec(dataset=f"npz:{files}/fresh.npz", preset="custom")
    np.savez(files / "fresh.npz", **arrays(seed=3))
    with pytest.raises(DatasetError, match="changed since it was registered"):
        ep.load_dataset(spec.dataset)
