"""LeNet-300-100 (LeCun et al. 1998), the fully-connected MNIST network of SNIP's comparison."""

from __future__ import annotations

import math

from torch import nn

from earlyprune.models.base import InputShape, register_model

MNIST_SHAPE: InputShape = (1, 28, 28)


@register_model("lenet_300_100", input_shape=MNIST_SHAPE)
def lenet_300_100(num_classes: int, input_shape: InputShape) -> nn.Module:
    """Flatten → 300 → ReLU → 100 → ReLU → classes (266,610 parameters on MNIST)."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(math.prod(input_shape), 300),
        nn.ReLU(),
        nn.Linear(300, 100),
        nn.ReLU(),
        nn.Linear(100, num_classes),
    )
