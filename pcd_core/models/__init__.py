"""The model zoo: one registry of every classifier the project can build.

CIFAR architectures follow the CRD (HobbitLong/RepDistiller) / mdistiller definitions used by the
logit-distillation literature; their ``forward`` returns logits only. Every constructor takes
``(num_classes, in_channels, image_size)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from . import mobilenetv2, resnet_cifar, resnet_imagenet_style, shufflenet, small, vgg, wrn

__all__ = [
    "MODELS",
    "ModelSpec",
    "build_model",
    "count_parameters",
    "list_models",
    "model_family",
]


@dataclass(frozen=True)
class ModelSpec:
    """A registered architecture.

    ``constructor(num_classes, in_channels, image_size)`` builds it; ``min_image_size`` is the
    smallest square input side it is registered for.
    """

    name: str
    constructor: Callable[[int, int, int], nn.Module]
    family: str
    description: str
    min_image_size: int = 8


_CIFAR_MIN = 8

_SPECS: list[ModelSpec] = [
    # CIFAR ResNets (resnet.py)
    *[
        ModelSpec(
            f"resnet{d}",
            getattr(resnet_cifar, f"resnet{d}"),
            "resnet",
            f"CIFAR ResNet-{d} (BasicBlock, widths 16-32-64)",
            _CIFAR_MIN,
        )
        for d in (8, 14, 20, 32, 44, 56, 110)
    ],
    ModelSpec(
        "resnet8x4",
        resnet_cifar.resnet8x4,
        "resnet",
        "CIFAR ResNet-8, 4x wider (32-64-128-256)",
        _CIFAR_MIN,
    ),
    ModelSpec(
        "resnet32x4",
        resnet_cifar.resnet32x4,
        "resnet",
        "CIFAR ResNet-32, 4x wider (32-64-128-256)",
        _CIFAR_MIN,
    ),
    # Wide ResNets (wrn.py)
    *[
        ModelSpec(
            f"wrn_{d}_{k}",
            getattr(wrn, f"wrn_{d}_{k}"),
            "wrn",
            f"Wide ResNet, depth {d}, widen factor {k}",
            _CIFAR_MIN,
        )
        for d, k in ((16, 1), (16, 2), (40, 1), (40, 2))
    ],
    # VGG-BN (vgg.py, *_bn variants)
    *[
        ModelSpec(
            f"vgg{d}",
            getattr(vgg, f"vgg{d}"),
            "vgg",
            f"CIFAR VGG-{d} with BatchNorm",
            _CIFAR_MIN,
        )
        for d in (8, 11, 13, 16, 19)
    ],
    ModelSpec(
        "MobileNetV2",
        mobilenetv2.mobilenetv2_half,
        "mobilenet",
        "CRD mobile_half: MobileNetV2, expansion 6, width 0.5",
        _CIFAR_MIN,
    ),
    ModelSpec(
        "ShuffleV1",
        shufflenet.shufflev1,
        "shufflenet",
        "CRD ShuffleNetV1, 3 groups, widths 240-480-960",
        _CIFAR_MIN,
    ),
    ModelSpec(
        "ShuffleV2",
        shufflenet.shufflev2,
        "shufflenet",
        "CRD ShuffleNetV2, net size 1, widths 116-232-464-1024",
        _CIFAR_MIN,
    ),
    ModelSpec(
        "ResNet18",
        resnet_imagenet_style.resnet18_cifar,
        "resnet_imagenet_style",
        "ResNet18 with a CIFAR stem (resnetv2.py)",
        _CIFAR_MIN,
    ),
    ModelSpec(
        "ResNet34",
        resnet_imagenet_style.resnet34_cifar,
        "resnet_imagenet_style",
        "ResNet34 with a CIFAR stem (resnetv2.py)",
        _CIFAR_MIN,
    ),
    ModelSpec(
        "ResNet50",
        resnet_imagenet_style.resnet50_cifar,
        "resnet_imagenet_style",
        "ResNet50 (Bottleneck) with a CIFAR stem (resnetv2.py)",
        _CIFAR_MIN,
    ),
    # Small models for digits / MNIST-like data
    ModelSpec("mlp_32", small.mlp_32, "mlp", "MLP, one hidden layer of 32 (ReLU)", 1),
    ModelSpec("mlp_64", small.mlp_64, "mlp", "MLP, one hidden layer of 64 (ReLU)", 1),
    ModelSpec("mlp_256", small.mlp_256, "mlp", "MLP, one hidden layer of 256 (ReLU)", 1),
    ModelSpec("mlp_256x2", small.mlp_256x2, "mlp", "MLP, two hidden layers of 256 (ReLU)", 1),
    ModelSpec(
        "cnn_small",
        small.cnn_small,
        "cnn",
        "2-conv BN CNN (32, 64 channels) + 128-unit hidden layer: digits/Fashion-MNIST teacher",
        4,
    ),
    ModelSpec(
        "cnn_tiny",
        small.cnn_tiny,
        "cnn",
        "2-conv BN CNN (8, 16 channels), global pooling: small student",
        2,
    ),
]

MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in _SPECS}
if len(MODELS) != len(_SPECS):  # pragma: no cover - guards against a duplicated registration
    raise RuntimeError("duplicate model name in the registry")


def _get_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        allowed = ", ".join(MODELS)
        raise ValueError(f"unknown model {name!r}; allowed names: {allowed}") from None


def list_models() -> list[ModelSpec]:
    """All registered model specs, in registration order."""
    return list(MODELS.values())


def model_family(name: str) -> str:
    """The family of a registered model (e.g. "resnet", "wrn", "mlp")."""
    return _get_spec(name).family


def build_model(
    name: str, num_classes: int, in_channels: int = 3, image_size: int = 32
) -> nn.Module:
    """Build a registered model; its ``forward(x)`` maps [B, in_channels, H, W] to [B, classes]."""
    spec = _get_spec(name)
    for arg, value in (
        ("num_classes", num_classes),
        ("in_channels", in_channels),
        ("image_size", image_size),
    ):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{arg} must be an int, got {value!r}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    if image_size < spec.min_image_size:
        raise ValueError(
            f"image_size={image_size} is too small for model {name!r} "
            f"(minimum {spec.min_image_size})"
        )
    return spec.constructor(num_classes, in_channels, image_size)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all of them, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
