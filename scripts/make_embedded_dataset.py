"""Builds the embedded ``fashion-mnist-mini`` dataset shipped inside the package.

Reads the real Fashion-MNIST IDX files (Debian package ``dataset-fashion-mnist`` installs them in
/usr/share/datasets/fashion-mnist/), draws a class-stratified subset with a fixed seed — 10,000
training images (1,000 per class) and 2,000 test images (200 per class) — and writes

* ``src/earlyprune/data/embedded/fashion_mnist_mini.npz`` (uint8 x_train, y_train, x_test, y_test)
* ``src/earlyprune/data/embedded/LICENSE-fashion-mnist.txt`` (Zalando's MIT notice).

Usage: ``python scripts/make_embedded_dataset.py [--source DIR]``. The arrays written are
the same on every run (the zip container carries timestamps).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from earlyprune.data.bundle import TensorSplit
from earlyprune.data.idx import FASHION_MNIST, read_idx_split
from earlyprune.data.sampling import stratified_indices

SEED = 20170825  # fixed: the subset must not change between builds (Fashion-MNIST's release day)
N_TRAIN, N_TEST = 10_000, 2_000
OUT = Path(__file__).resolve().parents[1] / "src" / "earlyprune" / "data" / "embedded"

LICENSE = """\
Fashion-MNIST (https://github.com/zalandoresearch/fashion-mnist)
The embedded file fashion_mnist_mini.npz is a stratified subset (10,000 training and 2,000 test
images) of the Fashion-MNIST dataset, redistributed under its licence:

The MIT License (MIT) Copyright © [2017] Zalando SE, https://tech.zalando.com

Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
associated documentation files (the "Software"), to deal in the Software without restriction,
including without limitation the rights to use, copy, modify, merge, publish, distribute,
sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT
NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES
OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN
CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
"""


def stratified(split: TensorSplit, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The images (N, 28, 28) and labels of a stratified random subset of ``n`` examples."""
    picked = stratified_indices(split.labels, n, 10, seed)
    return split.images[picked, 0].numpy(), split.labels[picked].numpy().astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=FASHION_MNIST.system_folders[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    x_train, y_train = stratified(
        read_idx_split(args.source, "train", FASHION_MNIST.how), N_TRAIN, SEED
    )
    x_test, y_test = stratified(
        read_idx_split(args.source, "test", FASHION_MNIST.how), N_TEST, SEED + 1
    )
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / "fashion_mnist_mini.npz"
    np.savez_compressed(target, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    (args.out / "LICENSE-fashion-mnist.txt").write_text(LICENSE, encoding="utf-8")
    counts = np.bincount(y_train, minlength=10).tolist(), np.bincount(y_test, minlength=10).tolist()
    print(f"wrote {target} ({target.stat().st_size / 1e6:.2f} MB); per-class counts {counts}")


if __name__ == "__main__":
    main()
