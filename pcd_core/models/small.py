"""Small models for 8x8 (sklearn digits) and 28x28 (MNIST-like) images.

- ``mlp_32`` / ``mlp_64`` / ``mlp_256``: flatten -> Linear -> ReLU -> Linear (one hidden layer).
- ``mlp_256x2``: two hidden layers of 256.
- ``cnn_small``: two conv-BN-ReLU-maxpool stages and a 128-unit hidden layer (a teacher).
- ``cnn_tiny``: two narrow conv-BN-ReLU stages, global average pooling, linear head (a student).

The MLPs and ``cnn_small`` size their first linear layer from ``image_size``, so inputs must
have that spatial size; ``cnn_tiny`` accepts any size.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = [
    "MLP",
    "CNNSmall",
    "CNNTiny",
    "cnn_small",
    "cnn_tiny",
    "mlp_32",
    "mlp_64",
    "mlp_256",
    "mlp_256x2",
]


def _init_conv_bn(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


class MLP(nn.Module):
    """Fully connected ReLU network on the flattened image."""

    def __init__(
        self, hidden: tuple[int, ...], num_classes: int, in_channels: int, image_size: int
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten(1)]
        width = in_channels * image_size * image_size
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class CNNSmall(nn.Module):
    """conv(32)-BN-ReLU-pool, conv(64)-BN-ReLU-pool, Linear(128)-ReLU, Linear(num_classes)."""

    def __init__(self, num_classes: int, in_channels: int, image_size: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        side = image_size // 4
        self.classifier = nn.Sequential(
            nn.Flatten(1),
            nn.Linear(64 * side * side, 128),
            nn.ReLU(inplace=True),
            nn.Linear(128, num_classes),
        )
        _init_conv_bn(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


class CNNTiny(nn.Module):
    """conv(8)-BN-ReLU-pool, conv(16)-BN-ReLU, global average pool, Linear(num_classes)."""

    def __init__(self, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 8, 3, padding=1, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
        )
        self.fc = nn.Linear(16, num_classes)
        _init_conv_bn(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x).flatten(1))


def mlp_32(num_classes: int = 10, in_channels: int = 1, image_size: int = 8) -> MLP:
    """MLP with one hidden layer of 32."""
    return MLP((32,), num_classes, in_channels, image_size)


def mlp_64(num_classes: int = 10, in_channels: int = 1, image_size: int = 8) -> MLP:
    """MLP with one hidden layer of 64."""
    return MLP((64,), num_classes, in_channels, image_size)


def mlp_256(num_classes: int = 10, in_channels: int = 1, image_size: int = 8) -> MLP:
    """MLP with one hidden layer of 256."""
    return MLP((256,), num_classes, in_channels, image_size)


def mlp_256x2(num_classes: int = 10, in_channels: int = 1, image_size: int = 8) -> MLP:
    """MLP with two hidden layers of 256."""
    return MLP((256, 256), num_classes, in_channels, image_size)


def cnn_small(num_classes: int = 10, in_channels: int = 1, image_size: int = 8) -> CNNSmall:
    """Two-conv BN CNN with a 128-unit hidden layer (teacher for digits / Fashion-MNIST)."""
    return CNNSmall(num_classes, in_channels, image_size)


def cnn_tiny(num_classes: int = 10, in_channels: int = 1, image_size: int = 8) -> CNNTiny:
    """Much smaller two-conv CNN (8 and 16 channels, global pooling): a student."""
    return CNNTiny(num_classes, in_channels)
