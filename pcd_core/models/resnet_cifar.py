"""CIFAR ResNets (resnet8 ... resnet110, resnet8x4, resnet32x4).

Faithful to ``models/resnet.py`` of the CRD / mdistiller code bases (3x3 stem, three stages,
post-activation BasicBlock, 1x1-conv + BN projection shortcut), minus the feature outputs:
``forward`` returns logits only. The 8x8 average pool is replaced by a global adaptive pool,
which is identical at 32x32 and lets any image size work.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ResNetCifar",
    "resnet8",
    "resnet8x4",
    "resnet14",
    "resnet20",
    "resnet32",
    "resnet32x4",
    "resnet44",
    "resnet56",
    "resnet110",
]


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """conv-BN-ReLU-conv-BN + shortcut, then ReLU."""

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + residual)


class ResNetCifar(nn.Module):
    """CIFAR ResNet of depth 6n+2 with BasicBlocks and stage widths ``num_filters``."""

    def __init__(
        self,
        depth: int,
        num_filters: list[int],
        num_classes: int = 100,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ValueError(f"depth must be 6n+2 (e.g. 20, 32, 44, 56, 110), got {depth}")
        n = (depth - 2) // 6
        self.inplanes = num_filters[0]
        self.conv1 = nn.Conv2d(in_channels, num_filters[0], kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(num_filters[0])
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(num_filters[1], n)
        self.layer2 = self._make_layer(num_filters[2], n, stride=2)
        self.layer3 = self._make_layer(num_filters[3], n, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(num_filters[3], num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )
        layers: list[nn.Module] = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.avgpool(x).flatten(1))


_THIN = [16, 16, 32, 64]
_X4 = [32, 64, 128, 256]


def resnet8(num_classes: int = 100, in_channels: int = 3, image_size: int = 32) -> ResNetCifar:
    """ResNet-8 (CIFAR)."""
    return ResNetCifar(8, _THIN, num_classes, in_channels)


def resnet14(num_classes: int = 100, in_channels: int = 3, image_size: int = 32) -> ResNetCifar:
    """ResNet-14 (CIFAR)."""
    return ResNetCifar(14, _THIN, num_classes, in_channels)


def resnet20(num_classes: int = 100, in_channels: int = 3, image_size: int = 32) -> ResNetCifar:
    """ResNet-20 (CIFAR)."""
    return ResNetCifar(20, _THIN, num_classes, in_channels)


def resnet32(num_classes: int = 100, in_channels: int = 3, image_size: int = 32) -> ResNetCifar:
    """ResNet-32 (CIFAR)."""
    return ResNetCifar(32, _THIN, num_classes, in_channels)


def resnet44(num_classes: int = 100, in_channels: int = 3, image_size: int = 32) -> ResNetCifar:
    """ResNet-44 (CIFAR)."""
    return ResNetCifar(44, _THIN, num_classes, in_channels)


def resnet56(num_classes: int = 100, in_channels: int = 3, image_size: int = 32) -> ResNetCifar:
    """ResNet-56 (CIFAR)."""
    return ResNetCifar(56, _THIN, num_classes, in_channels)


def resnet110(num_classes: int = 100, in_channels: int = 3, image_size: int = 32) -> ResNetCifar:
    """ResNet-110 (CIFAR)."""
    return ResNetCifar(110, _THIN, num_classes, in_channels)


def resnet8x4(num_classes: int = 100, in_channels: int = 3, image_size: int = 32) -> ResNetCifar:
    """ResNet-8 with 4x wider stages (32, 64, 128, 256)."""
    return ResNetCifar(8, _X4, num_classes, in_channels)


def resnet32x4(num_classes: int = 100, in_channels: int = 3, image_size: int = 32) -> ResNetCifar:
    """ResNet-32 with 4x wider stages (32, 64, 128, 256)."""
    return ResNetCifar(32, _X4, num_classes, in_channels)
