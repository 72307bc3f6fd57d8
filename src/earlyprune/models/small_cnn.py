"""A tiny CNN for 28×28 grayscale images, cheap enough to train hundreds of times on a laptop.

It is not from the paper. It exists so that demos and tests can run the paper's whole protocol
(methods × sparsities × ablations × seeds) in minutes on two CPU cores: ≈ 0.4 M multiply-adds
and 106 k parameters per 28×28 image, with convolutions, BatchNorm and linear layers so that
every kind of prunable layer and neuron collapse occur.
"""

from __future__ import annotations

import math

from torch import nn

from earlyprune.models.base import InputShape, register_model

MNIST_SHAPE: InputShape = (1, 28, 28)


def _strided_side(side: int) -> int:
    # Both convs (5×5 pad 2 and 3×3 pad 1, stride 2) map a side s to ceil(s / 2).
    return math.ceil(math.ceil(side / 2) / 2)


@register_model("smallcnn", input_shape=MNIST_SHAPE)
def smallcnn(num_classes: int, input_shape: InputShape) -> nn.Module:
    """Conv(16, 5×5, /2)-BN-ReLU → Conv(32, 3×3, /2)-BN-ReLU → 64 → ReLU → classes."""
    channels, height, width = input_shape
    features = 32 * _strided_side(height) * _strided_side(width)
    return nn.Sequential(
        nn.Conv2d(channels, 16, 5, stride=2, padding=2, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(features, 64),
        nn.ReLU(),
        nn.Linear(64, num_classes),
    )
