"""A network of your own: any ``nn.Module`` built from ``(num_classes, input_shape)``.

earlyprune calls ``build(num_classes, (channels, height, width))`` with the data's class count and
image shape, then initializes the weights with its own initializer (Kaiming normal by default),
as for its built-in networks. Every Conv and Linear weight is prunable.
"""

from torch import nn


def build(num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    channels, height, width = input_shape
    return nn.Sequential(
        nn.Conv2d(channels, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * (height // 2) * (width // 2), 32),
        nn.ReLU(),
        nn.Linear(32, num_classes),
    )
