"""Writes a small dataset of your own as an .npz file: ``python make_data.py OUT.npz``.

Here the images are 800 training and 200 test images of the Fashion-MNIST subset that ships
with earlyprune, stored channels-last (N, H, W, C) as uint8 — the layout most image libraries
produce. Your file needs the same four arrays: x_train, y_train, x_test, y_test.
"""

import sys

import numpy as np

import earlyprune as ep

bundle = ep.load_dataset("fashion-mnist-mini")
train, test = bundle.train, bundle.test
np.savez(
    sys.argv[1],
    x_train=train.images[:800].permute(0, 2, 3, 1).numpy(),  # (800, 28, 28, 1) uint8
    y_train=train.labels[:800].numpy(),
    x_test=test.images[:200].permute(0, 2, 3, 1).numpy(),
    y_test=test.labels[:200].numpy(),
)
