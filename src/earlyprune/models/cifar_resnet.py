"""CIFAR ResNets (He et al. 2016) and their wide variants, as in open_lth's ``cifar_resnet``.

A ResNet-D is a 3×3 stem convolution, three stages of n = (D − 2) / 6 basic blocks and one linear
layer. Following open_lth (whose naming the paper uses), WRN-D-W is the same network with stage
widths 16W, 32W, 64W, and the stem has as many channels as the first stage. Zagoruyko &
Komodakis count depth as 6n + 4 and keep a 16-channel stem, so their WRN-16-8 is the paper's
WRN-14-8 (Appendix D) up to the stem width.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from earlyprune.models.base import InputShape, global_avg_pool, register_model

CIFAR_SHAPE: InputShape = (3, 32, 32)


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN layers around a residual connection, ReLU after the sum.

    Args:
        in_channels: Channels of the input.
        out_channels: Channels of the output.
        stride: Stride of the first convolution (2 at the start of stages 2 and 3).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        # A 1×1 projection only where the shape changes (He et al.'s option B); identity else,
        # so ResNet-20 keeps its canonical 0.27 M parameters.
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        # Out of place: in-place adds can break the double backward that GraSP needs.
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """A CIFAR ResNet of depth ``depth`` whose first stage has ``width`` channels.

    Args:
        depth: Number of weighted layers, 6n + 2 (20, 32, 56, ...).
        width: Channels of the stem and the first stage (16 for the plain ResNets, 16W for
            WRN-D-W); the later stages have 2× and 4× as many.
        num_classes: Outputs of the final linear layer.
        in_channels: Channels of the input images.

    Raises:
        ValueError: If ``depth`` is not of the form 6n + 2 with n ≥ 1 or ``width`` < 1.
    """

    def __init__(self, depth: int, width: int, num_classes: int, in_channels: int) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6 != 0:
            raise ValueError(f"CIFAR ResNet depth must be 6n + 2 with n >= 1, got {depth}")
        if width < 1:
            raise ValueError(f"CIFAR ResNet width must be >= 1, got {width}")
        blocks_per_stage = (depth - 2) // 6
        self.conv = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        blocks: list[nn.Module] = []
        channels = width
        for stage, stage_width in enumerate((width, 2 * width, 4 * width)):
            for index in range(blocks_per_stage):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(BasicBlock(channels, stage_width, stride))
                channels = stage_width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn(self.conv(x)))
        out = self.blocks(out)
        # Global average pooling (8×8 on CIFAR), written so that other input sizes work too.
        out = global_avg_pool(out)
        return self.fc(out)


@register_model("resnet20", input_shape=CIFAR_SHAPE)
def resnet20(num_classes: int, input_shape: InputShape) -> nn.Module:
    """ResNet-20 for CIFAR-10 (0.27 M parameters), the paper's main small network."""
    return CifarResNet(20, 16, num_classes, input_shape[0])


@register_model("resnet32", input_shape=CIFAR_SHAPE)
def resnet32(num_classes: int, input_shape: InputShape) -> nn.Module:
    """ResNet-32 for CIFAR-10 (0.46 M parameters)."""
    return CifarResNet(32, 16, num_classes, input_shape[0])


@register_model("resnet56", input_shape=CIFAR_SHAPE)
def resnet56(num_classes: int, input_shape: InputShape) -> nn.Module:
    """ResNet-56 for CIFAR-10 (0.85 M parameters)."""
    return CifarResNet(56, 16, num_classes, input_shape[0])


@register_model("wrn_32_2", input_shape=CIFAR_SHAPE)
def wrn_32_2(num_classes: int, input_shape: InputShape) -> nn.Module:
    """WRN-32-2: ResNet-32 at twice the width (GraSP's "ResNet-32", paper Appendix E)."""
    return CifarResNet(32, 32, num_classes, input_shape[0])


@register_model("wrn_14_8", input_shape=CIFAR_SHAPE)
def wrn_14_8(num_classes: int, input_shape: InputShape) -> nn.Module:
    """WRN-14-8: SNIP's WRN-16-8 in open_lth's naming (paper Appendix D)."""
    return CifarResNet(14, 128, num_classes, input_shape[0])


@register_model("wrn_14_10", input_shape=CIFAR_SHAPE)
def wrn_14_10(num_classes: int, input_shape: InputShape) -> nn.Module:
    """WRN-14-10: SNIP's WRN-16-10 in open_lth's naming (paper Appendix D)."""
    return CifarResNet(14, 160, num_classes, input_shape[0])


@register_model("wrn_20_8", input_shape=CIFAR_SHAPE)
def wrn_20_8(num_classes: int, input_shape: InputShape) -> nn.Module:
    """WRN-20-8: SNIP's WRN-22-8 in open_lth's naming (paper Appendix D)."""
    return CifarResNet(20, 128, num_classes, input_shape[0])
