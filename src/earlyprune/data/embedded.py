"""The embedded default dataset: a stratified real subset of Fashion-MNIST shipped in the package.

``fashion-mnist-mini`` holds 10,000 training and 2,000 test images (1,000 and 200 per class) drawn
with a fixed seed from the official Fashion-MNIST splits by ``scripts/make_embedded_dataset.py``,
so the demo runs offline on a fresh install. Fashion-MNIST is © 2017 Zalando SE, MIT licence
(``embedded/LICENSE-fashion-mnist.txt``).
"""

from __future__ import annotations

import zipfile
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from earlyprune.core.errors import DatasetError
from earlyprune.data.api import register_dataset
from earlyprune.data.bundle import DataBundle, TensorBundle, TensorSplit
from earlyprune.data.idx import FASHION_MNIST

RESOURCE = "fashion_mnist_mini.npz"
KEYS = ("x_train", "y_train", "x_test", "y_test")


def _split(arrays: dict[str, np.ndarray], part: str, where: str) -> TensorSplit:
    images, labels = arrays[f"x_{part}"], arrays[f"y_{part}"]
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DatasetError(f"{where}: x_{part} must be uint8 (N, 28, 28), found {images.shape}")
    if labels.shape != (len(images),) or labels.max(initial=0) >= 10:
        raise DatasetError(f"{where}: y_{part} must hold one label in [0, 10) per image")
    return TensorSplit(
        torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))
    )


@register_dataset("fashion-mnist-mini")
def load_fashion_mnist_mini(root: Path | None, download: bool) -> DataBundle:
    """Fashion-MNIST mini: 10,000 train / 2,000 test, 1×28×28, 10 classes, always available.

    ``root`` and ``download`` are accepted for a uniform signature and not needed: the data ships
    inside the package.
    """
    resource = resources.files("earlyprune.data").joinpath("embedded", RESOURCE)
    where = str(resource)
    hint = "Reinstall earlyprune, or rebuild the file with scripts/make_embedded_dataset.py."
    try:
        with resources.as_file(resource) as path, np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in KEYS}
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{where}: cannot read the embedded dataset ({exc}). {hint}") from None
    return TensorBundle(
        name="fashion-mnist-mini",
        num_classes=10,
        mean=FASHION_MNIST.mean,
        std=FASHION_MNIST.std,
        train=_split(arrays, "train", where),
        test=_split(arrays, "test", where),
    )
