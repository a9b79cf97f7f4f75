"""ImageNet-style ResNet18/34/50 with a CIFAR stem (3x3 conv, stride 1, no max-pool).

Faithful to ``models/resnetv2.py`` of CRD / mdistiller (kaiming fan-out init,
``zero_init_residual=False``), logits only.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ResNetImageNetStyle", "resnet18_cifar", "resnet34_cifar", "resnet50_cifar"]


def _shortcut(in_planes: int, out_planes: int, stride: int) -> nn.Module:
    if stride != 1 or in_planes != out_planes:
        return nn.Sequential(
            nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False),
            nn.BatchNorm2d(out_planes),
        )
    return nn.Identity()


class BasicBlock(nn.Module):
    """Two 3x3 convs with BN, post-activation."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _shortcut(in_planes, planes * self.expansion, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 - 3x3 (strided) - 1x1 bottleneck with expansion 4."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.shortcut = _shortcut(in_planes, planes * self.expansion, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


class ResNetImageNetStyle(nn.Module):
    """Four-stage ResNet (64-128-256-512 planes) with a CIFAR stem."""

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        num_blocks: list[int],
        num_classes: int = 100,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.in_planes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = self._make_layer(block, 64, num_blocks[0], 1)
        self.layer2 = self._make_layer(block, 128, num_blocks[1], 2)
        self.layer3 = self._make_layer(block, 256, num_blocks[2], 2)
        self.layer4 = self._make_layer(block, 512, num_blocks[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(512 * block.expansion, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(
        self, block: type[BasicBlock] | type[Bottleneck], planes: int, n: int, stride: int
    ) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(block(self.in_planes, planes, s))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(self.avgpool(out).flatten(1))


def resnet18_cifar(
    num_classes: int = 100, in_channels: int = 3, image_size: int = 32
) -> ResNetImageNetStyle:
    """ResNet18 (BasicBlock, [2, 2, 2, 2]) with a CIFAR stem."""
    return ResNetImageNetStyle(BasicBlock, [2, 2, 2, 2], num_classes, in_channels)


def resnet34_cifar(
    num_classes: int = 100, in_channels: int = 3, image_size: int = 32
) -> ResNetImageNetStyle:
    """ResNet34 (BasicBlock, [3, 4, 6, 3]) with a CIFAR stem."""
    return ResNetImageNetStyle(BasicBlock, [3, 4, 6, 3], num_classes, in_channels)


def resnet50_cifar(
    num_classes: int = 100, in_channels: int = 3, image_size: int = 32
) -> ResNetImageNetStyle:
    """ResNet50 (Bottleneck, [3, 4, 6, 3]) with a CIFAR stem."""
    return ResNetImageNetStyle(Bottleneck, [3, 4, 6, 3], num_classes, in_channels)
