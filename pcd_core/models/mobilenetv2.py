"""MobileNetV2 for CIFAR, CRD's ``mobile_half`` (expansion 6, width 0.5, last conv 1280).

Faithful to ``models/mobilenetv2.py`` of CRD / mdistiller (stride-2 stem, so 32x32 ends at
2x2), logits only; the ``AvgPool2d(input_size // 16, ceil_mode=True)`` is replaced by a global
adaptive pool, which is identical at 32x32 and works for any input size.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

__all__ = ["MobileNetV2", "mobilenetv2_half"]


def _conv_bn(inp: int, oup: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inp, oup, 3, stride, 1, bias=False), nn.BatchNorm2d(oup), nn.ReLU(inplace=True)
    )


def _conv_1x1_bn(inp: int, oup: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inp, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup), nn.ReLU(inplace=True)
    )


class InvertedResidual(nn.Module):
    """pw-expand, depthwise 3x3, pw-linear; residual when stride 1 and inp == oup."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        self.use_res_connect = stride == 1 and inp == oup
        hidden = inp * expand_ratio
        self.conv = nn.Sequential(
            nn.Conv2d(inp, hidden, 1, 1, 0, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 with expansion ``expansion`` and width multiplier ``width_mult``."""

    def __init__(
        self,
        expansion: int = 6,
        width_mult: float = 0.5,
        num_classes: int = 100,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        t = expansion
        setting = [
            # t, c, n, s
            [1, 16, 1, 1],
            [t, 24, 2, 1],
            [t, 32, 3, 2],
            [t, 64, 4, 2],
            [t, 96, 3, 1],
            [t, 160, 3, 2],
            [t, 320, 1, 1],
        ]
        input_channel = int(32 * width_mult)
        self.conv1 = _conv_bn(in_channels, input_channel, 2)
        blocks: list[nn.Module] = []
        for t_i, c, n, s in setting:
            output_channel = int(c * width_mult)
            layers = []
            for stride in [s] + [1] * (n - 1):
                layers.append(InvertedResidual(input_channel, output_channel, stride, t_i))
                input_channel = output_channel
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.Sequential(*blocks)
        self.last_channel = int(1280 * width_mult) if width_mult > 1.0 else 1280
        self.conv2 = _conv_1x1_bn(input_channel, self.last_channel)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(self.last_channel, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(self.blocks(self.conv1(x)))
        return self.classifier(self.avgpool(out).flatten(1))


def mobilenetv2_half(
    num_classes: int = 100, in_channels: int = 3, image_size: int = 32
) -> MobileNetV2:
    """CRD's ``mobile_half``: MobileNetV2, expansion 6, width 0.5 (registered as "MobileNetV2")."""
    return MobileNetV2(6, 0.5, num_classes, in_channels)
