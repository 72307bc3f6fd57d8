"""VGG networks for CIFAR-10 as in open_lth's ``cifar_vgg`` (the paper's VGG-16, Appendix A).

Stacks of 3×3 conv-BN-ReLU with 2×2 max-pools, configurations A, D and E of Simonyan & Zisserman
without the last pool: on 32×32 inputs the final map is 2×2×512, which is averaged to 512 numbers
and fed to one linear layer (Lee et al.'s "VGG-like"; not the two-FC "VGG2-16").

As in open_lth and the authors' code (github 123Bailey123/Pruning, ``models/cifar_vgg.py``), the
convolutions carry biases although a BatchNorm follows each (β would make them redundant in a
dense network; they are not pruned, but they shift SNIP/GraSP gradients and SynFlow's flow).
VGG-16 thus has 14,728,266 parameters.
"""

from __future__ import annotations

from torch import Tensor, nn

from earlyprune.models.base import InputShape, global_avg_pool, register_model

CIFAR_SHAPE: InputShape = (3, 32, 32)

# Output channels of each conv; "M" is a 2×2 max-pool.
PLANS: dict[str, tuple[int | str, ...]] = {
    "A": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512),
    "D": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512),
    "E": (
        *(64, 64, "M", 128, 128, "M"),
        *(256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512),
    ),
}


class CifarVGG(nn.Module):
    """A CIFAR VGG built from a plan of conv widths and max-pools.

    Args:
        plan: Output channels of each 3×3 conv, with "M" for a 2×2 max-pool.
        num_classes: Outputs of the final linear layer.
        input_shape: (channels, height, width) of the inputs.

    Raises:
        ValueError: If the images are too small to survive the max-pools.
    """

    def __init__(
        self, plan: tuple[int | str, ...], num_classes: int, input_shape: InputShape
    ) -> None:
        super().__init__()
        min_side = 2 ** plan.count("M")
        if min(input_shape[1:]) < min_side:
            raise ValueError(
                f"this VGG needs images of at least {min_side}×{min_side}, got {input_shape}"
            )
        layers: list[nn.Module] = []
        channels = input_shape[0]
        for item in plan:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                assert isinstance(item, int)
                layers += [
                    nn.Conv2d(channels, item, 3, padding=1, bias=True),  # as the authors'
                    nn.BatchNorm2d(item),
                    nn.ReLU(),
                ]
                channels = item
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        # open_lth's AvgPool2d(2) on the 2×2 map, generalized to any input size.
        out = global_avg_pool(self.features(x))
        return self.fc(out)


@register_model("vgg11", input_shape=CIFAR_SHAPE)
def vgg11(num_classes: int, input_shape: InputShape) -> nn.Module:
    """VGG-11 (configuration A) for CIFAR-10, as in the SynFlow comparison (Appendix F)."""
    return CifarVGG(PLANS["A"], num_classes, input_shape)


@register_model("vgg16", input_shape=CIFAR_SHAPE)
def vgg16(num_classes: int, input_shape: InputShape) -> nn.Module:
    """VGG-16 (configuration D) for CIFAR-10 (14.7 M parameters), one of the paper's main nets."""
    return CifarVGG(PLANS["D"], num_classes, input_shape)


@register_model("vgg19", input_shape=CIFAR_SHAPE)
def vgg19(num_classes: int, input_shape: InputShape) -> nn.Module:
    """VGG-19 (configuration E) for CIFAR-10, as in the GraSP comparison (Appendix E)."""
    return CifarVGG(PLANS["E"], num_classes, input_shape)
