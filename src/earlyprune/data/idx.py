"""MNIST and Fashion-MNIST from IDX files, gzipped or not.

IDX format: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions, one
big-endian int32 per dimension, then the values. The reader checks every one of these against the
file length so that a truncated download is caught by name.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from earlyprune.core.errors import DatasetError
from earlyprune.data.api import missing_error, register_dataset, search_roots
from earlyprune.data.bundle import DataBundle, TensorBundle, TensorSplit
from earlyprune.data.download import fetch

_UBYTE = 0x08
_SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class IdxFormat:
    """One MNIST-like dataset: where to look, how to get it, its statistics."""

    name: str
    folders: tuple[str, ...]  # sub-folders of a root searched, besides the root itself
    system_folders: tuple[Path, ...]  # searched only when no root is given
    mean: tuple[float]
    std: tuple[float]
    mirrors: tuple[str, ...]
    md5: dict[str, str]
    how: str


MNIST = IdxFormat(
    name="mnist",
    folders=("mnist", "MNIST/raw"),
    system_folders=(),
    mean=(0.1307,),
    std=(0.3081,),
    mirrors=("http://yann.lecun.com/exdb/mnist/", "https://ossci-datasets.s3.amazonaws.com/mnist/"),
    md5={
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    how="Download the four files from http://yann.lecun.com/exdb/mnist/ into <root>/mnist/ "
    "(<root>: the folder --data-root names)",
)
FASHION_MNIST = IdxFormat(
    name="fashion-mnist",
    folders=("fashion-mnist", "FashionMNIST/raw"),
    system_folders=(Path("/usr/share/datasets/fashion-mnist"),),
    mean=(0.2860,),
    std=(0.3530,),
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    md5={
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    how="Install it with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), download the "
    "four files from https://github.com/zalandoresearch/fashion-mnist into <root>/fashion-mnist/ "
    "(<root>: the folder --data-root names)",
)


def read_idx(path: Path, hint: str = "") -> np.ndarray:
    """Reads an unsigned-byte IDX file (gzip detected from its first bytes, not its name).

    Raises:
        DatasetError: Unreadable, corrupt gzip, bad magic number, or a length that does not match
            the dimensions in the header.
    """
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(
            f"{path}: cannot read the IDX file ({exc}); it may be truncated. {hint}"
        ) from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != _UBYTE:
        raise DatasetError(
            f"{path}: not an unsigned-byte IDX file (expected magic 0x0000 08 nn, found "
            f"{raw[:4].hex() or 'an empty file'}). {hint}"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path}: IDX header cut short ({len(raw)} bytes). {hint}")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected:
        raise DatasetError(
            f"{path}: header says {dims} values ({expected} bytes in all) but the file holds "
            f"{len(raw)} bytes; it is truncated or corrupt. {hint}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _locate(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def read_idx_split(folder: Path, split: str, hint: str) -> TensorSplit:
    """Reads one split (``"train"`` or ``"test"``) of an MNIST-like folder, checking it fully."""
    paths = []
    for stem in _SPLITS[split]:
        path = _locate(folder, stem)
        if path is None:
            raise DatasetError(f"{folder / stem}[.gz]: missing IDX file. {hint}")
        paths.append(path)
    images, labels = read_idx(paths[0], hint), read_idx(paths[1], hint)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DatasetError(
            f"{paths[0]}: expected images of shape (N, 28, 28), found {images.shape}"
        )
    if labels.ndim != 1 or len(labels) != len(images):
        raise DatasetError(
            f"{paths[1]}: expected {len(images)} labels (one per image in {paths[0].name}), "
            f"found shape {labels.shape}"
        )
    bad = np.flatnonzero(labels >= 10)
    if len(bad):
        raise DatasetError(f"{paths[1]}: label {labels[bad[0]]} at {bad[0]} is outside [0, 10)")
    return TensorSplit(
        torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))
    )


def _find_folder(fmt: IdxFormat, root: Path | None) -> tuple[Path | None, list[Path]]:
    searched = []
    for base in search_roots(root):
        searched += [base] + [base / sub for sub in fmt.folders]
    if root is None:
        searched += list(fmt.system_folders)
    for folder in searched:
        if _locate(folder, _SPLITS["train"][0]) is not None:
            return folder, searched
    return None, searched


def _download(fmt: IdxFormat, target: Path) -> None:
    for name, md5 in fmt.md5.items():
        fetch([mirror + name for mirror in fmt.mirrors], target / name, md5)


def fetch_hint(fmt: IdxFormat, root: Path) -> str:
    """What to do when the files are missing, runnable from a shell (the CLI never downloads)."""
    call = f"ep.load_dataset({fmt.name!r}, root={str(root)!r}, download=True)"
    return f'{fmt.how}, or fetch them with: python -c "import earlyprune as ep; {call}"'


def load_idx(fmt: IdxFormat, root: Path | None, download: bool) -> DataBundle:
    """Reads (and with ``download`` fetches) an MNIST-like dataset into a :class:`TensorBundle`."""
    folder, searched = _find_folder(fmt, root)
    if folder is None and download:
        folder = search_roots(root)[0] / fmt.folders[0]
        _download(fmt, folder)
    if folder is None:
        raise missing_error(
            f"{fmt.name} IDX files", searched, fetch_hint(fmt, search_roots(root)[0])
        )
    return TensorBundle(
        name=fmt.name,
        num_classes=10,
        mean=fmt.mean,
        std=fmt.std,
        train=read_idx_split(folder, "train", fmt.how),
        test=read_idx_split(folder, "test", fmt.how),
    )  # paper, App. A (LeNet on MNIST): normalization only, no shift or flip


@register_dataset("mnist")
def load_mnist(root: Path | None, download: bool) -> DataBundle:
    """MNIST: 60,000 train / 10,000 test, 1×28×28, 10 classes."""
    return load_idx(MNIST, root, download)


@register_dataset("fashion-mnist")
def load_fashion_mnist(root: Path | None, download: bool) -> DataBundle:
    """Fashion-MNIST: 60,000 train / 10,000 test, 1×28×28, 10 classes.

    With no root, also looks in /usr/share/datasets/fashion-mnist (Debian dataset-fashion-mnist).
    """
    return load_idx(FASHION_MNIST, root, download)
