"""Data from Python instead of a file: ``--dataset examples/own/my_loader.py:load``.

``load()`` returns x_train, y_train, x_test, y_test (a dict or a tuple) or a ``DataBundle``.
Here: float images in [0, 1], channels first (N, C, H, W); normalization is computed from x_train.
"""

import earlyprune as ep


def load():
    bundle = ep.load_dataset("fashion-mnist-mini")
    train, test = bundle.train, bundle.test
    return {
        "x_train": train.images[:800].float().numpy() / 255,
        "y_train": train.labels[:800].numpy(),
        "x_test": test.images[:200].float().numpy() / 255,
        "y_test": test.labels[:200].numpy(),
    }
