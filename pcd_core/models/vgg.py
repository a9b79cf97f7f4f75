"""VGG with BatchNorm for CIFAR (vgg8, vgg11, vgg13, vgg16, vgg19).

Faithful to ``models/vgg.py`` of CRD / mdistiller with ``batch_norm=True`` (the ``*_bn``
variants that the distillation tables call "vgg8"/"vgg13"): five conv blocks (conv bias on),
max-pooling after the first three, a fourth max-pool only for inputs of 64 px or more, global
average pooling and a single 512 -> num_classes linear layer. Logits only.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["VGG", "vgg8", "vgg11", "vgg13", "vgg16", "vgg19"]

CFG: dict[str, list[list[int]]] = {
    "S": [[64], [128], [256], [512], [512]],
    "A": [[64], [128], [256, 256], [512, 512], [512, 512]],
    "B": [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    "D": [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
    "E": [[64, 64], [128, 128], [256] * 4, [512] * 4, [512] * 4],
}


def _make_block(cfg: list[int], in_channels: int) -> nn.Sequential:
    """conv-BN-ReLU repeated; the final ReLU is dropped (applied in ``forward``), as in CRD."""
    layers: list[nn.Module] = []
    for v in cfg:
        layers += [nn.Conv2d(in_channels, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(True)]
        in_channels = v
    return nn.Sequential(*layers[:-1])


class VGG(nn.Module):
    """CIFAR VGG-BN from a 5-block configuration."""

    def __init__(
        self,
        cfg: list[list[int]],
        num_classes: int = 100,
        in_channels: int = 3,
        image_size: int = 32,
    ) -> None:
        super().__init__()
        self.block0 = _make_block(cfg[0], in_channels)
        self.block1 = _make_block(cfg[1], cfg[0][-1])
        self.block2 = _make_block(cfg[2], cfg[1][-1])
        self.block3 = _make_block(cfg[3], cfg[2][-1])
        self.block4 = _make_block(cfg[4], cfg[3][-1])
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        # CRD applies the 4th max-pool only when h == 64 (Tiny-ImageNet); generalised to >= 64.
        self.pool3_enabled = image_size >= 64
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cfg[4][-1], num_classes)

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
        x = self.pool(F.relu(self.block0(x)))
        x = self.pool(F.relu(self.block1(x)))
        x = self.pool(F.relu(self.block2(x)))
        x = F.relu(self.block3(x))
        if self.pool3_enabled:
            x = self.pool(x)
        x = F.relu(self.block4(x))
        return self.classifier(self.avgpool(x).flatten(1))


def vgg8(num_classes: int = 100, in_channels: int = 3, image_size: int = 32) -> VGG:
    """VGG-8-BN (configuration "S")."""
    return VGG(CFG["S"], num_classes, in_channels, image_size)


def vgg11(num_classes: int = 100, in_channels: int = 3, image_size: int = 32) -> VGG:
    """VGG-11-BN (configuration "A")."""
    return VGG(CFG["A"], num_classes, in_channels, image_size)


def vgg13(num_classes: int = 100, in_channels: int = 3, image_size: int = 32) -> VGG:
    """VGG-13-BN (configuration "B")."""
    return VGG(CFG["B"], num_classes, in_channels, image_size)


def vgg16(num_classes: int = 100, in_channels: int = 3, image_size: int = 32) -> VGG:
    """VGG-16-BN (configuration "D")."""
    return VGG(CFG["D"], num_classes, in_channels, image_size)


def vgg19(num_classes: int = 100, in_channels: int = 3, image_size: int = 32) -> VGG:
    """VGG-19-BN (configuration "E")."""
    return VGG(CFG["E"], num_classes, in_channels, image_size)
