"""LeNet-300-100 (LeCun et al. 1998), the fully-connected MNIST network of SNIP's comparison."""

from __future__ import annotations

import math
from collections import OrderedDict

from torch import nn

from earlyprune.models.base import InputShape, register_model

MNIST_SHAPE: InputShape = (1, 28, 28)


@register_model("lenet_300_100", input_shape=MNIST_SHAPE)
def lenet_300_100(num_classes: int, input_shape: InputShape) -> nn.Module:
    """Flatten → 300 → ReLU → 100 → ReLU → classes (266,610 parameters on MNIST)."""
    # Named layers (``fc1.weight``, not ``1.weight``) for readable reports and masks.
    return nn.Sequential(
        OrderedDict(
            flatten=nn.Flatten(),
            fc1=nn.Linear(math.prod(input_shape), 300),
            relu1=nn.ReLU(),
            fc2=nn.Linear(300, 100),
            relu2=nn.ReLU(),
            fc3=nn.Linear(100, num_classes),
        )
    )
