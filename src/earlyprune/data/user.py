"""Your own data: ``--dataset npz:path/to/file.npz`` or ``--dataset path/to/file.py:loader``.

An ``.npz`` file holds four arrays: ``x_train``, ``y_train``, ``x_test``, ``y_test`` (and
optionally a scalar ``num_classes``). Images are uint8 (0–255) or floating point, shaped
(N, H, W), (N, C, H, W) or (N, H, W, C): an array whose last axis has ≤ 4 entries and whose
second has more is taken as channels-last. Labels are integers in [0, num_classes); without
``num_classes`` the class count is ``max(y_train) + 1``. A loader ``loader()`` (no arguments)
returns the same four arrays (a dict, or a tuple in that order) or a ready ``DataBundle``.

Normalization is per channel, from the training split only (uint8 pixels scaled to [0, 1]
first); no augmentation is applied (earlyprune cannot know which transformations keep your
labels; a loader that wants some returns its own ``DataBundle``).

A user dataset is registered in :data:`DATASETS` under a content-hashed name —
``npz:<stem>@<8 hex of the file's SHA-256>``, or ``<stem>:<loader>@<8 hex of the loader file's
SHA-256>`` — which a run spec stores in ``dataset`` (part of the run id: new data, new runs);
the absolute location goes in ``dataset_file`` (not part of the id) so workers can load it. A
loader's name hashes the loader's source, not the files it reads: to track data files, use npz.
"""

from __future__ import annotations

import hashlib
import os
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from earlyprune.core.errors import DatasetError, SpecError
from earlyprune.data.api import DATASETS
from earlyprune.data.bundle import DataBundle, TensorBundle, TensorSplit

__registers__ = ()  # helper: registers a user's npz or FILE.py:FUNC data when a run names it

KEYS = ("x_train", "y_train", "x_test", "y_test")
USAGE = "expected a dataset name, npz:path/to/file.npz, path/to/file.py:LOADER or pkg.mod:LOADER"
#: A registered user dataset's name: ``npz:stem@<8 hex>`` or ``stem:loader@<8 hex>``.
USER_NAME = re.compile(r"^.+:.+@([0-9a-f]{8}|nosource)$")


def resolve_dataset(dataset: str, dataset_file: str) -> tuple[str, str]:
    """The ``(dataset, dataset_file)`` a spec stores, registering user data in this process.

    Same rules as :func:`earlyprune.models.user.resolve_model`: registered names are kept, a
    stored user name is registered again from ``dataset_file`` (and must still match the
    file), and ``npz:FILE`` / ``FILE.py:F`` / ``pkg.mod:F`` targets are registered.

    Raises:
        SpecError: The file is missing or changed since the spec was made, or the loader
            cannot be imported. Bad arrays are found when the data is loaded (``DatasetError``).
    """
    from earlyprune.core.user_functions import resolve_user_input

    return resolve_user_input(
        "dataset",
        dataset,
        dataset_file,
        registered=DATASETS.__contains__,
        user_name=lambda n: bool(USER_NAME.match(n)),
        register=register_dataset_target,
        make_absolute=_absolute,
    )


def _absolute(target: str) -> str:
    if target.startswith("npz:"):
        return "npz:" + os.path.abspath(os.path.expanduser(target[4:]))
    from earlyprune.core.user_functions import absolute

    return absolute(target)


def register_dataset_target(target: str) -> str:
    """Registers ``npz:FILE`` or a loader ``FILE.py:F`` / ``pkg.mod:F``; returns its name."""
    if target.startswith("npz:"):
        path = Path(target[4:]).expanduser()
        if not path.is_file():
            raise SpecError(f"no such file: {path}")
        name = f"npz:{path.stem}@{file_digest(path)}"
        if name not in DATASETS:
            DATASETS.add(name, lambda _root, _download: load_npz(path, name))
        return name
    from earlyprune.core.user_functions import load_function

    loader, name = load_function(target, USAGE)
    if name not in DATASETS:
        DATASETS.add(name, lambda _root, _download: from_loader(loader, target, name))
    return name


def file_digest(path: Path) -> str:
    """8 hex digits of the file's SHA-256, read in chunks (data files may be large)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:8]


def load_npz(path: Path, name: str) -> DataBundle:
    """Reads and checks an npz file of the four arrays (see the module docstring)."""
    try:
        digest = file_digest(path)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read it ({exc})") from None
    if not name.endswith(f"@{digest}"):  # edited after this name was registered in the process
        raise DatasetError(
            f"{path} changed since it was registered as {name!r}: its runs need "
            "the old content; plan them again"
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{path}: cannot read it as an .npz file ({exc})") from None
    return bundle_from_arrays(arrays, name, str(path))


def from_loader(loader: Any, target: str, name: str) -> DataBundle:
    """Calls a user loader and checks what it returns."""
    from earlyprune.core.user_functions import one_line

    try:
        out = loader()
    except (MemoryError, torch.OutOfMemoryError):
        raise  # the machine's memory, not a broken loader: the run is left to resume
    except Exception as exc:
        raise DatasetError(f"{target}() raised {one_line(exc)}") from None
    if isinstance(out, DataBundle):
        return out
    if isinstance(out, tuple | list) and len(out) == 4:
        out = dict(zip(KEYS, out, strict=True))
    if not isinstance(out, Mapping):
        raise DatasetError(
            f"{target}() must return a DataBundle, a dict with {', '.join(KEYS)} "
            f"or a tuple of those four arrays, got {type(out).__name__}"
        )
    return bundle_from_arrays(out, name, target)


def bundle_from_arrays(arrays: Mapping[str, Any], name: str, where: str) -> DataBundle:
    """A ``DataBundle`` from the four arrays; every problem is a ``DatasetError`` naming one.

    Args:
        arrays: ``x_train``, ``y_train``, ``x_test``, ``y_test`` (numpy arrays or tensors),
            optionally ``num_classes``.
        name: The bundle's name.
        where: The file or loader, for messages.
    """
    missing = [k for k in KEYS if k not in arrays]
    if missing:
        raise DatasetError(
            f"{where}: array {missing[0]!r} is missing (found: "
            f"{', '.join(sorted(arrays)) or 'none'}; expected {', '.join(KEYS)})"
        )
    a = {k: _numpy(arrays[k], k, where) for k in KEYS}
    images = {part: _images(a[f"x_{part}"], f"x_{part}", where) for part in ("train", "test")}
    if images["train"].shape[1:] != images["test"].shape[1:]:
        raise DatasetError(
            f"{where}: x_test images are {images['test'].shape[1:]} (C, H, W) but "
            f"x_train images are {images['train'].shape[1:]}"
        )
    if images["train"].dtype != images["test"].dtype:
        raise DatasetError(
            f"{where}: x_train is {images['train'].dtype} but x_test is "
            f"{images['test'].dtype}; use one dtype for both"
        )
    labels = {
        part: _labels(a[f"y_{part}"], f"y_{part}", len(images[part]), where)
        for part in ("train", "test")
    }
    num_classes = _num_classes(arrays.get("num_classes"), labels, where)
    x_train = images["train"]
    floats = x_train.dtype != np.uint8
    scale = 1.0 if floats else 255.0
    mean = x_train.mean(axis=(0, 2, 3), dtype=np.float64) / scale
    std = x_train.std(axis=(0, 2, 3), dtype=np.float64) / scale
    std[std == 0] = 1.0  # a constant channel: leave it unscaled instead of dividing by zero
    split = FloatSplit if floats else TensorSplit
    cls = FloatBundle if floats else TensorBundle
    return cls(
        name=name,
        num_classes=num_classes,
        mean=tuple(mean.tolist()),
        std=tuple(std.tolist()),
        train=split(torch.from_numpy(x_train.copy()), torch.from_numpy(labels["train"])),
        test=split(torch.from_numpy(images["test"].copy()), torch.from_numpy(labels["test"])),
    )


def _numpy(value: Any, key: str, where: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if not isinstance(value, np.ndarray):
        raise DatasetError(f"{where}: {key} must be an array, got {type(value).__name__}")
    return value


def _images(x: np.ndarray, key: str, where: str) -> np.ndarray:
    """(N, C, H, W) uint8 or float32, from (N, H, W), NCHW or NHWC uint8/float."""
    if x.dtype != np.uint8 and not np.issubdtype(x.dtype, np.floating):
        raise DatasetError(
            f"{where}: {key} must hold uint8 (0–255) or floating-point pixels, got {x.dtype}"
        )
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        if x.shape[-1] <= 4 < x.shape[1]:  # channels last (N, H, W, C)
            x = x.transpose(0, 3, 1, 2)
    else:
        raise DatasetError(
            f"{where}: {key} must be images (N, H, W), (N, C, H, W) or "
            f"(N, H, W, C), got an array of shape {x.shape}"
        )
    if len(x) == 0:
        raise DatasetError(f"{where}: {key} holds no images")
    if x.dtype != np.uint8:
        x = x.astype(np.float32)
        if not np.isfinite(x).all():
            raise DatasetError(f"{where}: {key} contains NaN or infinite pixels")
    return np.ascontiguousarray(x)


def _labels(y: np.ndarray, key: str, n: int, where: str) -> np.ndarray:
    if y.ndim != 1:
        raise DatasetError(f"{where}: {key} must be one label per image (N,), got shape {y.shape}")
    if not (np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_):
        raise DatasetError(f"{where}: {key} must hold integer class labels, got {y.dtype}")
    if len(y) != n:
        image_key = "x_" + key[2:]
        raise DatasetError(f"{where}: {key} has {len(y)} labels but {image_key} has {n} images")
    y = y.astype(np.int64)
    if y.min() < 0:
        raise DatasetError(f"{where}: {key} holds label {int(y.min())}; labels must be ≥ 0")
    return y


def _num_classes(given: Any, labels: dict[str, np.ndarray], where: str) -> int:
    top = int(labels["train"].max())
    if given is None:
        n = top + 1
        if int(labels["test"].max()) >= n:
            raise DatasetError(
                f"{where}: y_test holds label {int(labels['test'].max())} but "
                f"y_train's labels only reach {top}; give num_classes"
            )
    else:
        value = np.asarray(given)
        if value.shape != () or not np.issubdtype(value.dtype, np.integer):
            raise DatasetError(f"{where}: num_classes must be one integer, got {given!r}")
        n = int(value)
        for part, y in labels.items():
            if int(y.max()) >= n:
                raise DatasetError(
                    f"{where}: y_{part} holds label {int(y.max())}, out of range "
                    f"for num_classes = {n} (labels 0..{n - 1})"
                )
    if n < 2:
        raise DatasetError(f"{where}: the labels name {n} class; at least 2 are needed")
    return n


class FloatSplit(TensorSplit):
    """A split of float32 images (N, C, H, W) in the data's own units."""

    def __post_init__(self) -> None:
        if self.images.dtype != torch.float32 or self.images.dim() != 4:
            raise DatasetError(
                f"images must be a float32 tensor (N, C, H, W), got "
                f"{self.images.dtype} {tuple(self.images.shape)}"
            )
        if self.labels.dim() != 1 or len(self.labels) != len(self.images):
            raise DatasetError(f"{len(self.images)} images need {len(self.images)} labels")
        object.__setattr__(self, "labels", self.labels.long())

    def select(self, indices: torch.Tensor) -> FloatSplit:
        return FloatSplit(self.images[indices], self.labels[indices])


class FloatBundle(TensorBundle):
    """A ``TensorBundle`` of float images, normalized as ``(x − mean) / std`` (no 1/255)."""

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, device=images.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=images.device).view(1, -1, 1, 1)
        return (images.float() - mean) / std
