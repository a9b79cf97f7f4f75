"""Wide ResNets for CIFAR (wrn_16_1, wrn_16_2, wrn_40_1, wrn_40_2).

Faithful to ``models/wrn.py`` of CRD / mdistiller (pre-activation blocks, 1x1 projection on the
pre-activated input when widths differ, final BN-ReLU), logits only, global adaptive pooling.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["WideResNet", "wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2"]


class BasicBlock(nn.Module):
    """Pre-activation block: BN-ReLU-conv-BN-ReLU-(dropout)-conv + shortcut."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, drop_rate: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.drop_rate = drop_rate
        self.equal_in_out = in_planes == out_planes
        self.conv_shortcut = (
            None
            if self.equal_in_out
            else nn.Conv2d(in_planes, out_planes, 1, stride=stride, padding=0, bias=False)
        )

    def forward(self, x: Tensor) -> Tensor:
        pre = self.relu1(self.bn1(x))
        out = self.relu2(self.bn2(self.conv1(pre)))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        out = self.conv2(out)
        # Identity shortcut uses the raw input; the projection uses the pre-activated input.
        shortcut = x if self.conv_shortcut is None else self.conv_shortcut(pre)
        return shortcut + out


class WideResNet(nn.Module):
    """WRN-depth-widen_factor with depth = 6n+4."""

    def __init__(
        self,
        depth: int,
        widen_factor: int,
        num_classes: int = 100,
        in_channels: int = 3,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if (depth - 4) % 6 != 0:
            raise ValueError(f"depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        ch = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(in_channels, ch[0], 3, stride=1, padding=1, bias=False)
        self.block1 = self._make_stage(n, ch[0], ch[1], 1, drop_rate)
        self.block2 = self._make_stage(n, ch[1], ch[2], 2, drop_rate)
        self.block3 = self._make_stage(n, ch[2], ch[3], 2, drop_rate)
        self.bn1 = nn.BatchNorm2d(ch[3])
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(ch[3], num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    @staticmethod
    def _make_stage(
        n: int, in_planes: int, out_planes: int, stride: int, drop_rate: float
    ) -> nn.Sequential:
        return nn.Sequential(
            *[
                BasicBlock(
                    in_planes if i == 0 else out_planes,
                    out_planes,
                    stride if i == 0 else 1,
                    drop_rate,
                )
                for i in range(n)
            ]
        )

    def forward(self, x: Tensor) -> Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = self.relu(self.bn1(out))
        return self.fc(self.avgpool(out).flatten(1))


def wrn_16_1(num_classes: int = 100, in_channels: int = 3, image_size: int = 32) -> WideResNet:
    """WRN-16-1."""
    return WideResNet(16, 1, num_classes, in_channels)


def wrn_16_2(num_classes: int = 100, in_channels: int = 3, image_size: int = 32) -> WideResNet:
    """WRN-16-2."""
    return WideResNet(16, 2, num_classes, in_channels)


def wrn_40_1(num_classes: int = 100, in_channels: int = 3, image_size: int = 32) -> WideResNet:
    """WRN-40-1."""
    return WideResNet(40, 1, num_classes, in_channels)


def wrn_40_2(num_classes: int = 100, in_channels: int = 3, image_size: int = 32) -> WideResNet:
    """WRN-40-2."""
    return WideResNet(40, 2, num_classes, in_channels)
