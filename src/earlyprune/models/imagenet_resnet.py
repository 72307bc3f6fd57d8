"""ImageNet ResNets (He et al. 2016) in plain torch, with torchvision's layers and state_dict keys.

``resnet18`` and ``resnet50`` are the paper's ResNet-18 (TinyImageNet) and ResNet-50 (ImageNet):
a 7×7 stride-2 stem, a 3×3 max-pool and four stages with 1×1 projection shortcuts where the shape
changes. As in torchvision (ResNet v1.5), a bottleneck strides in its 3×3 conv.
``resnet18_modified`` is the SynFlow paper's TinyImageNet network (Appendix F): 3×3 stride-1 stem,
no max-pool.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from earlyprune.models.base import InputShape, global_avg_pool, register_model

IMAGENET_SHAPE: InputShape = (3, 224, 224)
TINY_IMAGENET_SHAPE: InputShape = (3, 64, 64)


def _projection(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """A 1×1 conv-BN shortcut where the shape changes, the identity elsewhere."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN layers and a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = _projection(in_channels, channels, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        # Out of place: in-place adds can break the double backward that GraSP needs.
        return F.relu(out + self.downsample(x))


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3 (strided), 1×1 expand ×4, and a residual connection (ResNet-50+)."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = nn.Conv2d(channels, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.downsample = _projection(in_channels, out_channels, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.downsample(x))


class ImageNetResNet(nn.Module):
    """An ImageNet-style ResNet.

    Args:
        block: ``BasicBlock`` or ``Bottleneck``.
        blocks_per_stage: Number of blocks in each of the four stages.
        num_classes: Outputs of the final linear layer.
        in_channels: Channels of the input images.
        small_stem: Use a 3×3 stride-1 stem without max-pool (SynFlow's modified ResNet-18)
            instead of the 7×7 stride-2 stem and max-pool.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        blocks_per_stage: tuple[int, int, int, int],
        num_classes: int,
        in_channels: int,
        small_stem: bool,
    ) -> None:
        super().__init__()
        if small_stem:
            self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
            self.maxpool: nn.Module = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(64)
        stages: list[nn.Module] = []
        channels = 64
        for stage, num_blocks in enumerate(blocks_per_stage):
            width = 64 * 2**stage
            blocks: list[nn.Module] = []
            for index in range(num_blocks):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(block(channels, width, stride))
                channels = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = global_avg_pool(out)
        return self.fc(out)


@register_model("resnet18", input_shape=IMAGENET_SHAPE)
def resnet18(num_classes: int, input_shape: InputShape) -> nn.Module:
    """ResNet-18 (11.7 M parameters at 1000 classes); the paper trains it on TinyImageNet."""
    return ImageNetResNet(BasicBlock, (2, 2, 2, 2), num_classes, input_shape[0], small_stem=False)


@register_model("resnet50", input_shape=IMAGENET_SHAPE)
def resnet50(num_classes: int, input_shape: InputShape) -> nn.Module:
    """ResNet-50 (25.6 M parameters at 1000 classes) for ImageNet."""
    return ImageNetResNet(Bottleneck, (3, 4, 6, 3), num_classes, input_shape[0], small_stem=False)


@register_model("resnet18_modified", input_shape=TINY_IMAGENET_SHAPE)
def resnet18_modified(num_classes: int, input_shape: InputShape) -> nn.Module:
    """SynFlow's modified ResNet-18 for TinyImageNet/CIFAR: 3×3 stride-1 stem, no max-pool."""
    return ImageNetResNet(BasicBlock, (2, 2, 2, 2), num_classes, input_shape[0], small_stem=True)
