"""CIFAR-10 and CIFAR-100 from the official python-pickle batches.

Layout (as unpacked from the official archives)::

    <root>/cifar-10-batches-py/{data_batch_1..5, test_batch}
    <root>/cifar-100-python/{train, test}

Each batch is a pickled dict with ``b"data"`` (uint8, N×3072, channel-major 32×32) and
``b"labels"`` (CIFAR-10) or ``b"fine_labels"`` (CIFAR-100). Pickles can run code when loaded, so a
restricted unpickler accepts only the few numpy globals that these files reference.
"""

from __future__ import annotations

import importlib
import io
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from earlyprune.core.errors import DatasetError
from earlyprune.data.api import missing_error, register_dataset, search_roots
from earlyprune.data.bundle import DataBundle, TensorBundle, TensorSplit
from earlyprune.data.download import extract_tar, fetch

_PIXELS = 3 * 32 * 32


@dataclass(frozen=True)
class CifarFormat:
    """What distinguishes CIFAR-10 from CIFAR-100 on disk."""

    name: str
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: bytes
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    url: str
    md5: str


CIFAR10 = CifarFormat(
    name="cifar10",
    folder="cifar-10-batches-py",
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_files=("test_batch",),
    label_key=b"labels",
    num_classes=10,
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    md5="c58f30108f718f92721af3b95e74349a",
)
CIFAR100 = CifarFormat(
    name="cifar100",
    folder="cifar-100-python",
    train_files=("train",),
    test_files=("test",),
    label_key=b"fine_labels",
    num_classes=100,
    mean=(0.5071, 0.4865, 0.4409),
    std=(0.2673, 0.2564, 0.2762),
    url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    md5="eb9058c3a382ffc7106e4002c42a8d85",
)

# (module, name) pairs that numpy arrays in the official (Python 2) and re-saved batches refer to.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "numpy.core.multiarray"),
    ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "numpy.core.multiarray"),
    ("numpy.core.numeric", "_frombuffer"): ("numpy._core.numeric", "numpy.core.numeric"),
    ("numpy._core.numeric", "_frombuffer"): ("numpy._core.numeric", "numpy.core.numeric"),
    ("numpy", "ndarray"): ("numpy",),
    ("numpy", "dtype"): ("numpy",),
    ("_codecs", "encode"): ("_codecs",),  # how Python 3 writes bytes into protocol-2 pickles
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Refuses every global except numpy array reconstruction, so loading runs no foreign code."""

    def find_class(self, module: str, name: str) -> object:
        modules = _ALLOWED_GLOBALS.get((module, name))
        if modules is None:
            raise pickle.UnpicklingError(f"refusing to load the global {module}.{name}")
        for candidate in modules:
            try:
                return getattr(importlib.import_module(candidate), name)
            except (ImportError, AttributeError):
                continue
        raise pickle.UnpicklingError(f"numpy lacks {module}.{name}")


def read_batch(
    path: Path, label_key: bytes, num_classes: int, hint: str
) -> tuple[np.ndarray, np.ndarray]:
    """Reads one pickled CIFAR batch.

    Returns:
        uint8 images (N, 3, 32, 32) and int64 labels (N,).

    Raises:
        DatasetError: Unreadable, not the expected dict, wrong shapes, or labels out of range.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read the CIFAR batch ({exc}). {hint}") from None
    try:
        batch = _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as exc:  # noqa: BLE001 - a corrupt pickle can raise nearly anything
        raise DatasetError(
            f"{path}: not a readable CIFAR python-pickle batch ({type(exc).__name__}: {exc}); "
            f"the file may be truncated or corrupt. {hint}"
        ) from None
    if not isinstance(batch, dict):
        raise DatasetError(f"{path}: expected a pickled dict, found {type(batch).__name__}. {hint}")
    batch = {k.encode() if isinstance(k, str) else k: v for k, v in batch.items()}
    if b"data" not in batch or label_key not in batch:
        keys = sorted(str(k) for k in batch)
        raise DatasetError(f"{path}: expected keys b'data' and {label_key!r}, found {keys}. {hint}")
    data, labels = batch[b"data"], batch[label_key]
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2):
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DatasetError(f"{path}: b'data' must be a uint8 array (N, {_PIXELS}), found {got}")
    if data.shape[1] != _PIXELS:
        raise DatasetError(
            f"{path}: images must be 3×32×32 = {_PIXELS} bytes each, found {data.shape[1]}"
        )
    try:
        raw = np.asarray(labels)
        labels = raw.astype(np.int64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: {label_key!r} is not a list of integers ({exc})") from None
    # The real files hold Python ints: float (or bool, str) labels mean a corrupt or foreign
    # file, and casting would silently truncate 3.7 to class 3.
    if raw.size and raw.dtype.kind not in "iu":
        raise DatasetError(
            f"{path}: {label_key!r} must hold integer class labels, found "
            f"{raw.dtype} values; the file is corrupt or not a CIFAR batch. "
            f"{hint}"
        )
    if len(labels) != len(data):
        raise DatasetError(f"{path}: {len(data)} images but {len(labels)} labels")
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if len(bad):
        raise DatasetError(
            f"{path}: label {labels[bad[0]]} at position {bad[0]} is outside [0, {num_classes})"
        )
    return data.reshape(-1, 3, 32, 32), labels


def _find_folder(fmt: CifarFormat, roots: list[Path]) -> Path | None:
    for root in roots:
        for folder in (root / fmt.folder, root):
            if (folder / fmt.test_files[0]).is_file():
                return folder
    return None


def _read_split(folder: Path, files: tuple[str, ...], fmt: CifarFormat, hint: str) -> TensorSplit:
    parts = []
    for name in files:
        path = folder / name
        if not path.is_file():
            raise DatasetError(f"{path}: missing batch file of {fmt.name}. {hint}")
        parts.append(read_batch(path, fmt.label_key, fmt.num_classes, hint))
    images = torch.from_numpy(np.concatenate([p[0] for p in parts]))
    labels = torch.from_numpy(np.concatenate([p[1] for p in parts]))
    return TensorSplit(images, labels)


def fetch_hint(fmt: CifarFormat, root: Path) -> str:
    """What to do when the files are missing, runnable from a shell (the CLI never downloads)."""
    call = f"ep.load_dataset({fmt.name!r}, root={str(root)!r}, download=True)"
    return (
        f"Download {fmt.url} and unpack it into {root} (the folder --data-root names), or "
        f'fetch it with: python -c "import earlyprune as ep; {call}"'
    )


def load_cifar(fmt: CifarFormat, root: Path | None, download: bool) -> DataBundle:
    """Reads (and with ``download`` fetches) a CIFAR dataset into a :class:`TensorBundle`."""
    roots = search_roots(root)
    hint = fetch_hint(fmt, roots[0])
    folder = _find_folder(fmt, roots)
    if folder is None and download:
        archive = fetch([fmt.url], roots[0] / Path(fmt.url).name, fmt.md5)
        extract_tar(archive, roots[0])
        folder = _find_folder(fmt, roots)
    if folder is None:
        raise missing_error(f"{fmt.name} folder {fmt.folder}/", roots, hint)
    return TensorBundle(
        name=fmt.name,
        num_classes=fmt.num_classes,
        mean=fmt.mean,
        std=fmt.std,
        train=_read_split(folder, fmt.train_files, fmt, hint),
        test=_read_split(folder, fmt.test_files, fmt, hint),
        shift=4,  # paper, App. A: random shift by up to four pixels
        flip=True,
    )


@register_dataset("cifar10")
def load_cifar10(root: Path | None, download: bool) -> DataBundle:
    """CIFAR-10: 50,000 train / 10,000 test, 3×32×32, 10 classes."""
    return load_cifar(CIFAR10, root, download)


@register_dataset("cifar100")
def load_cifar100(root: Path | None, download: bool) -> DataBundle:
    """CIFAR-100 (fine labels): 50,000 train / 10,000 test, 3×32×32, 100 classes."""
    return load_cifar(CIFAR100, root, download)
