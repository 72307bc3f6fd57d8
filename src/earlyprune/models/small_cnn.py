"""A tiny CNN for 28×28 grayscale images, cheap enough to train hundreds of times on a laptop.

It is not from the paper. It exists so that demos and tests can run the paper's whole protocol
(methods × sparsities × ablations × seeds) in minutes on two CPU cores: ≈ 0.4 M multiply-adds
and 106 k parameters per 28×28 image, with convolutions, BatchNorm and linear layers so that
every kind of prunable layer and neuron collapse occur.
"""

from __future__ import annotations

import math
from collections import OrderedDict

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
    # Named layers, so reports and masks say ``conv1.weight`` rather than ``0.weight``; the
    # order (and so the initialization, drawn in module order) is that of a plain Sequential.
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(channels, 16, 5, stride=2, padding=2, bias=False),
            bn1=nn.BatchNorm2d(16),
            relu1=nn.ReLU(),
            conv2=nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False),
            bn2=nn.BatchNorm2d(32),
            relu2=nn.ReLU(),
            flatten=nn.Flatten(),
            fc1=nn.Linear(features, 64),
            relu3=nn.ReLU(),
            fc2=nn.Linear(64, num_classes),
        )
    )
