"""Tests for the model zoo in pcd_core.models."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from pcd_core.models import (
    MODELS,
    ModelSpec,
    build_model,
    count_parameters,
    list_models,
    model_family,
)

# Published parameter counts (CIFAR-100 heads, 3x32x32 inputs), in millions, as reported by the
# CRD / mdistiller / DKD papers.
PUBLISHED_M = {
    "resnet8x4": 1.23,
    "resnet32x4": 7.43,
    "wrn_40_2": 2.26,
    "wrn_16_2": 0.70,
    "wrn_40_1": 0.57,
    "resnet20": 0.28,
    "resnet32": 0.47,
    "resnet56": 0.86,
    "resnet110": 1.74,
    "vgg13": 9.46,
    "vgg8": 3.96,
    "MobileNetV2": 0.81,
    "ShuffleV1": 0.95,
    "ShuffleV2": 1.36,
    "ResNet50": 23.71,
}

SMALL_FAMILIES = {"mlp", "cnn"}
CIFAR_NAMES = [s.name for s in list_models() if s.family not in SMALL_FAMILIES]
SMALL_NAMES = [s.name for s in list_models() if s.family in SMALL_FAMILIES]


def _forward_backward(model: nn.Module, x: torch.Tensor, num_classes: int) -> torch.Tensor:
    model.train()
    out = model(x)
    assert out.shape == (x.shape[0], num_classes)
    assert torch.isfinite(out).all()
    out.float().logsumexp(dim=1).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"parameter {pname} received no gradient"
        assert torch.isfinite(p.grad).all(), f"non-finite gradient in {pname}"
    return out


@pytest.mark.parametrize("name", sorted(PUBLISHED_M))
def test_parameter_count_matches_published(name: str) -> None:
    n = count_parameters(build_model(name, num_classes=100, in_channels=3, image_size=32))
    expected = PUBLISHED_M[name] * 1e6
    assert abs(n - expected) / expected < 0.01, f"{name}: {n} params vs published {expected:.0f}"


def test_count_parameters_counts_exactly() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2, bias=False))
    assert count_parameters(model) == 3 * 4 + 4 + 4 * 2
    model[0].weight.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == 4 + 4 * 2


@pytest.mark.parametrize("name", CIFAR_NAMES)
def test_cifar_forward_backward(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, num_classes=10, in_channels=3, image_size=32)
    _forward_backward(model, torch.randn(2, 3, 32, 32), 10)


@pytest.mark.parametrize("name", SMALL_NAMES)
@pytest.mark.parametrize("size", [8, 28])
def test_small_forward_backward(name: str, size: int) -> None:
    torch.manual_seed(0)
    model = build_model(name, num_classes=10, in_channels=1, image_size=size)
    _forward_backward(model, torch.randn(2, 1, size, size), 10)


@pytest.mark.parametrize("name", CIFAR_NAMES)
def test_cifar_models_accept_other_sizes(name: str) -> None:
    """Global pooling: the minimum size and a non-power-of-two size both give [B, C] logits."""
    spec = MODELS[name]
    model = build_model(name, num_classes=7, in_channels=3, image_size=spec.min_image_size).eval()
    with torch.no_grad():
        for size in (spec.min_image_size, 40):
            assert model(torch.randn(2, 3, size, size)).shape == (2, 7)


def test_vgg_extra_pool_for_64px() -> None:
    model = build_model("vgg8", num_classes=5, image_size=64).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 5)


@pytest.mark.parametrize("name", ["resnet20", "wrn_16_2", "vgg8", "ShuffleV2", "MobileNetV2"])
def test_in_channels_one(name: str) -> None:
    model = build_model(name, num_classes=10, in_channels=1, image_size=28)
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.in_channels == 1
    _forward_backward(model, torch.randn(2, 1, 28, 28), 10)
    with pytest.raises(RuntimeError):
        model(torch.randn(2, 3, 28, 28))


@pytest.mark.parametrize(
    "name", ["resnet8", "wrn_16_1", "vgg8", "MobileNetV2", "ShuffleV1", "ShuffleV2", "ResNet18"]
)
def test_channels_last_and_bf16_autocast(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
        model_cl = model.to(memory_format=torch.channels_last)
        out_cl = model_cl(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out_cl, ref, rtol=1e-4, atol=1e-4)

    model_cl.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model_cl(x.to(memory_format=torch.channels_last))
    assert out.dtype == torch.bfloat16
    assert out.shape == (2, 10)
    assert torch.isfinite(out.float()).all()
    out.float().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", ["resnet20", "ShuffleV2", "cnn_small"])
def test_eval_mode_is_deterministic_and_batch_independent(name: str) -> None:
    size, ch = (8, 1) if MODELS[name].family in SMALL_FAMILIES else (32, 3)
    torch.manual_seed(0)
    model = build_model(name, num_classes=10, in_channels=ch, image_size=size)
    # One training step so running BN statistics are non-trivial.
    model(torch.randn(4, ch, size, size) * 3 + 1)
    model.eval()
    x = torch.randn(3, ch, size, size)
    with torch.no_grad():
        a, b, single = model(x), model(x), model(x[:1])
    assert torch.equal(a, b)
    # Eval mode uses running statistics, so a sample's logits do not depend on its batch.
    torch.testing.assert_close(single, a[:1], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(a[0], a[1])


def test_same_seed_same_init() -> None:
    torch.manual_seed(123)
    a = build_model("resnet8", num_classes=10)
    torch.manual_seed(123)
    b = build_model("resnet8", num_classes=10)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_standard_init() -> None:
    model = build_model("resnet32x4", num_classes=100)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(bool((m.weight == 1).all() and (m.bias == 0).all()) for m in bns)
    conv = model.layer3[0].conv1
    fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
    assert conv.weight.std().item() == pytest.approx((2.0 / fan_out) ** 0.5, rel=0.05)


def test_unknown_name_lists_allowed_names() -> None:
    with pytest.raises(ValueError, match="no_such_net") as exc:
        build_model("no_such_net", num_classes=10)
    for name in ("resnet8x4", "wrn_40_2", "MobileNetV2", "mlp_256x2"):
        assert name in str(exc.value)
    with pytest.raises(ValueError, match="no_such_net"):
        model_family("no_such_net")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_classes": 1}, "num_classes"),
        ({"num_classes": 10, "in_channels": 0}, "in_channels"),
        ({"num_classes": 10, "image_size": 4}, "image_size"),
        ({"num_classes": 10.0}, "num_classes"),
    ],
)
def test_invalid_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_model("resnet20", **kwargs)


def test_registry_consistency() -> None:
    specs = list_models()
    assert [s.name for s in specs] == list(MODELS)
    expected = {
        "resnet8", "resnet14", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
        "resnet8x4", "resnet32x4", "wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2",
        "vgg8", "vgg11", "vgg13", "vgg16", "vgg19", "MobileNetV2", "ShuffleV1", "ShuffleV2",
        "ResNet18", "ResNet34", "ResNet50",
        "mlp_32", "mlp_64", "mlp_256", "mlp_256x2", "cnn_small", "cnn_tiny",
    }  # fmt: skip
    assert set(MODELS) == expected
    allowed = {"resnet", "wrn", "vgg", "mobilenet", "shufflenet", "resnet_imagenet_style"}
    allowed |= SMALL_FAMILIES
    for spec in specs:
        assert isinstance(spec, ModelSpec)
        assert spec.family in allowed
        assert model_family(spec.name) == spec.family
        assert spec.description
    assert model_family("wrn_40_2") == "wrn"
    assert model_family("ResNet50") == "resnet_imagenet_style"
    with pytest.raises(dataclasses.FrozenInstanceError):
        specs[0].name = "x"  # type: ignore[misc]


def test_small_model_sizes() -> None:
    def n(name: str) -> int:
        return count_parameters(build_model(name, num_classes=10, in_channels=1, image_size=8))

    assert n("mlp_32") == 64 * 32 + 32 + 32 * 10 + 10
    assert n("mlp_256x2") == 64 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10
    assert n("mlp_32") < n("mlp_64") < n("mlp_256") < n("mlp_256x2")
    assert n("cnn_tiny") * 20 < n("cnn_small")
