"""Tests of earlyprune.data: every reader against tiny files in the real on-disk formats."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import random
import tarfile
import urllib.error
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from earlyprune.core.errors import DatasetError
from earlyprune.data import (
    DATASETS,
    FolderBundle,
    TensorBundle,
    TensorSplit,
    cifar,
    list_datasets,
    load_dataset,
    scoring_batch,
)
from earlyprune.data.augment import random_resized_crop, resize_center_crop, shift_flip
from earlyprune.data.sampling import stratified_indices


def rng_for(tag: str) -> np.random.Generator:
    """A generator fixed by ``tag``, so every test file's pixels are the same on every run."""
    return np.random.default_rng(zlib.crc32(tag.encode()))


# ---------------------------------------------------------------- writers of the real formats
def write_cifar_batch(path: Path, data: np.ndarray, labels: list[int], key: bytes) -> None:
    batch = {
        b"batch_label": b"test",
        b"data": data,
        key: labels,
        b"filenames": [b"x"] * len(labels),
    }
    path.write_bytes(pickle.dumps(batch, protocol=2))


def make_cifar(root: Path, name: str, per_file: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Writes a tiny official-layout CIFAR folder; returns the expected train images and labels."""
    folder, files, key, classes = {
        "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], b"labels", 10),
        "cifar100": ("cifar-100-python", ["train"], b"fine_labels", 100),
    }[name]
    (root / folder).mkdir(parents=True)
    rng, images, labels = rng_for(name), [], []
    for file in [*files, "test_batch" if name == "cifar10" else "test"]:
        data = rng.integers(0, 256, (per_file, 3072), dtype=np.uint8)
        lab = rng.integers(0, classes, per_file).tolist()
        write_cifar_batch(root / folder / file, data, lab, key)
        if file in files:
            images.append(data.reshape(-1, 3, 32, 32))
            labels += lab
    return np.concatenate(images), np.array(labels)


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def make_idx(folder: Path, gz: bool, n: int = 12) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    rng, arrays = rng_for(f"idx{gz}"), {}
    for prefix, count in (("train", n), ("t10k", n // 2)):
        arrays[f"{prefix}-images-idx3-ubyte"] = rng.integers(
            0, 256, (count, 28, 28), dtype=np.uint8
        )
        arrays[f"{prefix}-labels-idx1-ubyte"] = rng.integers(0, 10, count, dtype=np.uint8)
    for stem, array in arrays.items():
        raw = idx_bytes(array)
        (folder / (stem + ".gz" if gz else stem)).write_bytes(gzip.compress(raw) if gz else raw)
    return arrays


def make_jpeg(path: Path, size: tuple[int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = rng_for(path.name).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, "JPEG", quality=90)


def make_tiny(root: Path, wnids=("n01", "n02", "n03"), per_class: int = 3) -> Path:
    folder = root / "tiny-imagenet-200"
    (folder / "val" / "images").mkdir(parents=True)
    (folder / "wnids.txt").write_text("\n".join(wnids) + "\n")
    lines = []
    for c, wnid in enumerate(wnids):
        for i in range(per_class):
            make_jpeg(folder / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", (64, 64))
        make_jpeg(folder / "val" / "images" / f"val_{c}.JPEG", (64, 64))
        lines.append(f"val_{c}.JPEG\t{wnid}\t0\t0\t63\t63")
    (folder / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return folder


def make_imagenet(root: Path) -> Path:
    folder = root / "imagenet"
    for split, sizes in (("train", [(300, 256), (256, 280)]), ("val", [(300, 256)])):
        for cls in ("cat", "dog"):
            for i, size in enumerate(sizes):
                make_jpeg(folder / split / cls / f"{cls}_{i}.JPEG", size)
    return folder


def denormalize(x: torch.Tensor, bundle) -> np.ndarray:
    mean = torch.tensor(bundle.mean).view(1, -1, 1, 1)
    std = torch.tensor(bundle.std).view(1, -1, 1, 1)
    return ((x * std + mean) * 255).round().clamp(0, 255).to(torch.uint8).numpy()


def toy_bundle(n: int = 70, shape=(3, 32, 32), shift: int = 4, flip: bool = True) -> TensorBundle:
    """Each image is constant (value = index) so a batch reveals which example it holds."""
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, *shape).contiguous()
    labels = torch.arange(n) % 7
    split = TensorSplit(images, labels)
    return TensorBundle(
        name="toy",
        num_classes=7,
        mean=(0.5,) * shape[0],
        std=(0.25,) * shape[0],
        train=split,
        test=TensorSplit(images[:20], labels[:20]),
        shift=shift,
        flip=flip,
    )


# ---------------------------------------------------------------- registry and missing data
def test_list_datasets_names_every_format():
    expected = {"cifar10", "cifar100", "mnist", "fashion-mnist", "tinyimagenet", "imagenet"}
    assert expected | {"fashion-mnist-mini"} == set(list_datasets())
    with pytest.raises(DatasetError, match="choose one of: cifar10"):
        load_dataset("cifar11")


@pytest.mark.parametrize("name", [n for n in DATASETS if n != "fashion-mnist-mini"])
def test_missing_folder_says_where_and_how(name, tmp_path):
    with pytest.raises(DatasetError) as err:
        load_dataset(name, root=tmp_path)
    message = str(err.value)
    assert str(tmp_path) in message and "not found" in message
    assert "http" in message or "apt-get" in message
    if name == "fashion-mnist":
        assert "apt-get install dataset-fashion-mnist" in message


@pytest.mark.parametrize("name", ["cifar10", "mnist", "fashion-mnist"])
def test_download_without_network_is_a_clear_error(name, tmp_path, monkeypatch):
    def offline(url, timeout):
        assert timeout is not None  # never wait forever
        raise urllib.error.URLError("network unreachable")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    with pytest.raises(DatasetError, match="could not download .*network unreachable"):
        load_dataset(name, root=tmp_path, download=True)


def test_cifar_download_fetches_checks_and_unpacks(tmp_path, monkeypatch):
    make_cifar(tmp_path / "stage", "cifar10")
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "stage" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    monkeypatch.setattr(cifar, "CIFAR10", replace(cifar.CIFAR10, md5=md5))
    urls = []
    monkeypatch.setattr(
        "urllib.request.urlopen",
        lambda url, timeout: urls.append(url) or io.BytesIO(archive.read_bytes()),
    )
    bundle = load_dataset("cifar10", root=tmp_path / "data", download=True)
    assert (
        urls == ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]
        and len(bundle.train) == 30
    )
    monkeypatch.setattr(cifar, "CIFAR10", replace(cifar.CIFAR10, md5="0" * 32))
    with pytest.raises(DatasetError, match="checksum mismatch"):
        load_dataset("cifar10", root=tmp_path / "other", download=True)


# ---------------------------------------------------------------- CIFAR
@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_reads_pixels_exactly(name, tmp_path):
    images, labels = make_cifar(tmp_path, name)
    bundle = load_dataset(name, root=tmp_path)
    assert bundle.input_shape == (3, 32, 32) and bundle.num_classes == (
        10 if name == "cifar10" else 100
    )
    assert torch.equal(bundle.train.images, torch.from_numpy(images))
    assert bundle.train.labels.tolist() == labels.tolist() and len(bundle.test) == 6


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


CIFAR_CORRUPTIONS = {
    "truncated": lambda raw: raw[: len(raw) // 2],
    "not a pickle": lambda raw: b"hello world",
    "not a dict": lambda raw: pickle.dumps([1, 2, 3], protocol=2),
    "missing key": lambda raw: pickle.dumps({b"data": np.zeros((1, 3072), np.uint8)}, protocol=2),
    "wrong size": lambda raw: pickle.dumps(
        {b"data": np.zeros((2, 3071), np.uint8), b"labels": [0, 1]}
    ),
    "label out of range": lambda raw: pickle.dumps(
        {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}
    ),
    "code in pickle": lambda raw: pickle.dumps({b"data": _Evil(), b"labels": [0]}, protocol=2),
}


@pytest.mark.parametrize("corruption", CIFAR_CORRUPTIONS)
def test_cifar_corrupt_batch_names_the_file(corruption, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_cifar(tmp_path, "cifar10")
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(CIFAR_CORRUPTIONS[corruption](path.read_bytes()))
    with pytest.raises(DatasetError, match="data_batch_3"):
        load_dataset("cifar10", root=tmp_path)
    assert not (tmp_path / "pwned").exists()


# ---------------------------------------------------------------- MNIST-like (IDX)
@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_idx_reads_pixels_exactly(name, gz, tmp_path):
    arrays = make_idx(tmp_path / name, gz)
    bundle = load_dataset(name, root=tmp_path)
    assert bundle.input_shape == (1, 28, 28)
    assert torch.equal(
        bundle.train.images[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"])
    )
    assert bundle.test.labels.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()


IDX_CORRUPTIONS = {
    "truncated": ("train-images-idx3-ubyte", lambda raw: raw[:-5]),
    "bad magic": ("train-images-idx3-ubyte", lambda raw: b"\x00\x00\x0d" + raw[3:]),
    "corrupt gzip": ("train-images-idx3-ubyte", lambda raw: gzip.compress(raw)[:40]),
    "count mismatch": ("train-labels-idx1-ubyte", lambda raw: idx_bytes(np.zeros(11, np.uint8))),
    "label 10": ("t10k-labels-idx1-ubyte", lambda raw: idx_bytes(np.full(6, 10, np.uint8))),
    "27x27": ("train-images-idx3-ubyte", lambda raw: idx_bytes(np.zeros((12, 27, 27), np.uint8))),
}


@pytest.mark.parametrize("corruption", IDX_CORRUPTIONS)
def test_idx_corrupt_file_names_the_file(corruption, tmp_path):
    make_idx(tmp_path, gz=False)
    stem, corrupt = IDX_CORRUPTIONS[corruption]
    (tmp_path / stem).write_bytes(corrupt((tmp_path / stem).read_bytes()))
    with pytest.raises(DatasetError, match=stem):
        load_dataset("mnist", root=tmp_path)


def test_default_root_comes_from_the_environment(tmp_path, monkeypatch):
    make_idx(tmp_path / "mnist", gz=True)
    monkeypatch.setenv("EARLYPRUNE_DATA", str(tmp_path))
    assert len(load_dataset("mnist").train) == 12


@pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="dataset-fashion-mnist absent"
)
def test_fashion_mnist_found_in_debian_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("EARLYPRUNE_DATA", str(tmp_path))
    bundle = load_dataset("fashion-mnist")
    assert (len(bundle.train), len(bundle.test)) == (60000, 10000)


def test_embedded_dataset_is_a_stratified_real_subset():
    bundle = load_dataset("fashion-mnist-mini")
    assert (len(bundle.train), len(bundle.test), bundle.input_shape) == (10000, 2000, (1, 28, 28))
    assert bundle.train.labels.bincount().tolist() == [1000] * 10
    assert bundle.test.labels.bincount().tolist() == [200] * 10
    assert bundle.train.images.dtype == torch.uint8 and bundle.train.images.float().std() > 50
    folder = Path(__import__("earlyprune.data.embedded").data.__file__).parent / "embedded"
    assert (folder / "fashion_mnist_mini.npz").stat().st_size < 8e6
    assert "Zalando SE" in (folder / "LICENSE-fashion-mnist.txt").read_text()


# ---------------------------------------------------------------- folder datasets
def test_tinyimagenet_matches_pil_decode_and_resumes(tmp_path):
    folder = make_tiny(tmp_path)
    bundle = load_dataset("tinyimagenet", root=tmp_path)
    bundle.num_workers = 0
    assert (bundle.num_classes, len(bundle.train), bundle.input_shape) == (3, 9, (3, 64, 64))
    x, y = next(bundle.test_batches(8))
    expected = [
        np.asarray(Image.open(folder / "val/images" / f"val_{c}.JPEG").convert("RGB"))
        for c in range(3)
    ]
    assert np.array_equal(denormalize(x, bundle), np.stack(expected).transpose(0, 3, 1, 2))
    assert y.tolist() == [0, 1, 2]
    full = list(bundle.train_batches(4, seed=1, epoch=2))
    assert [b[0].shape for b in full] == [(4, 3, 64, 64)] * 2 + [(1, 3, 64, 64)]
    assert full[0][0].dtype == torch.float32 and full[0][1].dtype == torch.int64
    for got, want in zip(
        bundle.train_batches(4, seed=1, epoch=2, start_step=1), full[1:], strict=True
    ):
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert not torch.equal(next(bundle.train_batches(4, seed=2, epoch=2))[0], full[0][0])


def test_folder_workers_give_the_same_batches_and_clean_errors(tmp_path):
    folder = make_tiny(tmp_path)
    serial = load_dataset("tinyimagenet", root=tmp_path)
    serial.num_workers = 0
    parallel = load_dataset("tinyimagenet", root=tmp_path)
    parallel.num_workers = 1
    for a, b in zip(
        serial.train_batches(5, seed=0, epoch=0),
        parallel.train_batches(5, seed=0, epoch=0),
        strict=True,
    ):
        assert torch.equal(a[0], b[0])
    (folder / "train/n02/images/n02_1.JPEG").write_bytes(b"\xff\xd8\xff\xe0 broken")
    with pytest.raises(DatasetError, match="n02_1.JPEG: cannot decode") as err:
        list(parallel.train_batches(5, seed=0, epoch=0))
    assert "Traceback" not in str(err.value)


TINY_CORRUPTIONS = {  # corruption -> (how to apply it, what the message must say)
    "wrong size": (
        lambda f: make_jpeg(f / "train/n01/images/n01_0.JPEG", (32, 32)),
        "n01_0.JPEG: expected a 64×64 image, found 32×32",
    ),
    "truncated jpeg": (
        lambda f: (f / "val/images/val_1.JPEG").write_bytes(
            (f / "val/images/val_1.JPEG").read_bytes()[:300]
        ),
        "val_1.JPEG: cannot decode",
    ),
    "unknown class": (
        lambda f: (f / "val/val_annotations.txt").write_text("val_0.JPEG\tn99\t0\n"),
        "line 1: class 'n99' is not one of the 3 classes",
    ),
    "missing annotations": (
        lambda f: (f / "val/val_annotations.txt").unlink(),
        "val_annotations.txt: missing",
    ),
    "missing class folder": (
        lambda f: (f / "wnids.txt").write_text("n01\nn02\nn03\nn04\n"),
        "n04/images: missing folder",
    ),
}


@pytest.mark.parametrize("corruption", TINY_CORRUPTIONS)
def test_tinyimagenet_corrupt_tree_raises(corruption, tmp_path):
    corrupt, message = TINY_CORRUPTIONS[corruption]
    corrupt(make_tiny(tmp_path))
    with pytest.raises(DatasetError, match=message) as err:
        bundle = load_dataset("tinyimagenet", root=tmp_path)
        bundle.num_workers = 0
        list(bundle.train_batches(16, seed=0, epoch=0))
        list(bundle.test_batches(16))
    assert "cs231n.stanford.edu" in str(err.value)


def test_imagenet_center_crop_matches_pil_decode(tmp_path):
    folder = make_imagenet(tmp_path)
    bundle = load_dataset("imagenet", root=tmp_path)
    assert isinstance(bundle, FolderBundle) and bundle.input_shape == (3, 224, 224)
    bundle.num_workers = 0
    x, y = next(bundle.test_batches(4))
    decoded = [
        np.asarray(Image.open(folder / f"val/{c}/{c}_0.JPEG").convert("RGB"))
        for c in ("cat", "dog")
    ]
    expected = np.stack([d[16:240, 38:262] for d in decoded]).transpose(0, 3, 1, 2)
    assert np.array_equal(denormalize(x, bundle), expected) and y.tolist() == [0, 1]
    xb, _ = next(bundle.train_batches(4, seed=0, epoch=0))
    assert xb.shape == (4, 3, 224, 224)


def test_imagenet_flat_val_or_unknown_class_raises(tmp_path):
    folder = make_imagenet(tmp_path)
    make_jpeg(folder / "val" / "loose.JPEG", (64, 64))
    with pytest.raises(DatasetError, match="loose"):
        load_dataset("imagenet", root=tmp_path)
    (folder / "val" / "loose.JPEG").unlink()
    make_jpeg(folder / "val" / "bird" / "b.JPEG", (64, 64))
    with pytest.raises(DatasetError, match=r"\['bird'\]"):
        load_dataset("imagenet", root=tmp_path)


@given(st.integers(1, 300), st.integers(1, 300), st.integers(0, 2**31))
@settings(max_examples=30, deadline=None)
def test_random_resized_crop_always_gives_the_size(width, height, seed):
    image = Image.new("RGB", (width, height))
    out = random_resized_crop(image, 17, random.Random(seed))
    assert out.size == (17, 17)
    assert resize_center_crop(image, 20, 17).size == (17, 17)


# ---------------------------------------------------------------- in-memory batching
def reference_shift_flip(images: np.ndarray, offsets: np.ndarray, flips: np.ndarray, pad: int):
    out = np.empty_like(images)
    for i, (dy, dx) in enumerate(offsets):
        padded = np.pad(images[i], ((0, 0), (pad, pad), (pad, pad)))
        crop = padded[:, dy : dy + images.shape[2], dx : dx + images.shape[3]]
        out[i] = crop[:, :, ::-1] if flips[i] else crop
    return out


@given(st.integers(0, 4), st.integers(1, 6), st.integers(0, 2**31))
@settings(max_examples=25, deadline=None)
def test_shift_flip_equals_per_image_reference(pad, n, seed):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 3, 9, 7), dtype=np.uint8)
    offsets = rng.integers(0, 2 * pad + 1, (n, 2))
    flips = rng.random(n) < 0.5
    got = shift_flip(
        torch.from_numpy(images), torch.from_numpy(offsets), torch.from_numpy(flips), pad
    )
    assert got.dtype == torch.uint8
    assert np.array_equal(got.numpy(), reference_shift_flip(images, offsets, flips, pad))


def test_train_batches_shapes_order_and_label_alignment():
    bundle = toy_bundle()
    assert bundle.steps_per_epoch(32) == 3
    batches = list(bundle.train_batches(32, seed=0, epoch=0))
    assert [len(x) for x, _ in batches] == [32, 32, 6]
    x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape[1:] == (3, 32, 32)
    index = torch.from_numpy(denormalize(x, bundle)[:, 0, 16, 16]).long()  # centre survives shifts
    assert sorted(index.tolist()) == list(range(70)) and torch.equal(y, index % 7)
    corners = denormalize(x, bundle)[:, :, 0, 0]
    assert (corners == 0).any(), "a shift by up to 4 pads some borders with zeros"


@pytest.mark.parametrize("batch_size,start", [(32, 1), (32, 2), (32, 3), (16, 4), (70, 0)])
def test_resume_at_start_step_is_bit_identical(batch_size, start):
    bundle = toy_bundle()
    full = list(bundle.train_batches(batch_size, seed=3, epoch=5))
    resumed = list(bundle.train_batches(batch_size, seed=3, epoch=5, start_step=start))
    assert len(resumed) == len(full) - start
    for (a, la), (b, lb) in zip(resumed, full[start:], strict=True):
        assert torch.equal(a, b) and torch.equal(la, lb)


def test_augmentation_depends_on_seed_and_epoch_only():
    bundle = toy_bundle(shape=(3, 12, 12))
    first = next(bundle.train_batches(70, seed=0, epoch=0))[0]
    assert torch.equal(first, next(bundle.train_batches(70, seed=0, epoch=0))[0])
    assert not torch.equal(first, next(bundle.train_batches(70, seed=1, epoch=0))[0])
    assert not torch.equal(first, next(bundle.train_batches(70, seed=0, epoch=1))[0])
    plain = next(bundle.train_batches(70, seed=0, epoch=0, augment=False))[0]
    order = torch.from_numpy(denormalize(plain, bundle)[:, 0, 0, 0]).long()
    assert torch.equal(plain, bundle.normalize(bundle.train.images[order]))
    with pytest.raises(ValueError, match="start_step"):
        next(bundle.train_batches(70, seed=0, epoch=0, start_step=2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_batches_on_gpu_equal_batches_on_cpu():
    bundle = toy_bundle()
    for (a, la), (b, lb) in zip(
        bundle.train_batches(32, seed=0, epoch=1),
        bundle.train_batches(32, seed=0, epoch=1, device="cuda"),
        strict=True,
    ):
        assert b.is_cuda and torch.allclose(a, b.cpu()) and torch.equal(la, lb.cpu())


def test_test_batches_in_order_and_normalized():
    bundle = toy_bundle()
    x = torch.cat([b[0] for b in bundle.test_batches(8, device=torch.device("cpu"))])
    expected = (bundle.test.images.float() / 255 - 0.5) / 0.25
    assert torch.allclose(x, expected, atol=1e-5)


# ---------------------------------------------------------------- scoring batch and subsets
@given(st.integers(1, 10), st.integers(0, 1000))
@settings(max_examples=20, deadline=None)
def test_scoring_batch_has_per_class_examples_of_every_class(per_class, seed):
    bundle = toy_bundle()
    x, y = scoring_batch(bundle, per_class=per_class, seed=seed)
    assert y.bincount(minlength=7).tolist() == [per_class] * 7
    index = torch.from_numpy(denormalize(x, bundle)[:, 0, 0, 0]).long()  # unaugmented: exact
    assert torch.equal(index % 7, y) and len(set(index.tolist())) == len(index)
    assert torch.equal(scoring_batch(bundle, per_class=per_class, seed=seed)[0], x)


def test_scoring_batch_short_class_raises():
    with pytest.raises(DatasetError, match="scoring needs 11"):
        scoring_batch(toy_bundle(), per_class=11)


@given(st.lists(st.integers(0, 4), min_size=1, max_size=200), st.data())
@settings(max_examples=40, deadline=None)
def test_stratified_indices_exact_count_and_shares(labels, data):
    labels = torch.tensor(labels)
    n = data.draw(st.integers(0, len(labels)))
    picked = stratified_indices(labels, n, 5, seed=data.draw(st.integers(0, 99)))
    assert len(picked) == n and len(set(picked.tolist())) == n
    assert torch.equal(picked, picked.sort().values)
    share = labels.bincount(minlength=5).double() * n / len(labels)
    got = labels[picked].bincount(minlength=5).double()
    assert bool(((got - share).abs() < 1).all())


def test_subset_is_stratified_and_checks_size():
    bundle = toy_bundle()
    small = bundle.subset(35, None, seed=1)
    assert len(small.train) == 35 and len(small.test) == 20 and len(bundle.train) == 70
    assert small.train.labels.bincount().tolist() == [5] * 7
    assert torch.equal(small.train.images, bundle.subset(35, None, seed=1).train.images)
    with pytest.raises(DatasetError, match="71"):
        bundle.subset(71, None)
