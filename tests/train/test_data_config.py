"""DataConfig's data options: named augmentations (old booleans still load), the image size
of image folders, the per-data-set defaults, and configs written before they existed."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pcd_core.train import DataConfig, TrainConfig, default_epochs, stored_config


@pytest.mark.parametrize(
    ("name", "augment", "expected"),
    [
        ("cifar100", None, "crop+flip"),
        ("cifar10", None, "crop+flip"),
        ("digits", None, "none"),
        ("fashion_mnist", None, "none"),
        ("image_folder", None, "none"),  # unknown data: nothing flipped unless asked
        ("image_folder", "flip", "flip"),
        ("cifar100", "crop", "crop"),
        ("image_folder", True, "crop+flip"),  # configs and checkpoints written with a bool
        ("cifar100", False, "none"),
    ],
)
def test_augment_is_a_name_with_per_data_set_defaults(name, augment, expected) -> None:
    data = DataConfig.model_validate({"name": name, "augment": augment})
    assert data.augment == expected == data.augmentation
    assert DataConfig.model_validate(data.model_dump(mode="json")) == data


def test_bad_data_options_name_the_field() -> None:
    with pytest.raises(ValidationError, match="unknown augmentation 'rotate'"):
        DataConfig(augment="rotate")
    with pytest.raises(ValidationError, match="image_size applies to image_folder data only"):
        DataConfig(name="digits", image_size=28)
    assert DataConfig(name="image_folder").image_size is None  # the images' own size
    assert DataConfig(name="image_folder", image_size=28).image_size == 28


def test_default_epochs_per_data_set() -> None:
    assert default_epochs("cifar100") == default_epochs("cifar10") == 240  # the recipe
    for name in ("digits", "mnist", "fashion_mnist", "image_folder"):
        assert default_epochs(name) == 20
    assert TrainConfig(arch="mlp_32").epochs == 240  # the library's config: the recipe


def test_configs_written_before_the_options_existed() -> None:
    """Old configs said augment null (crop+flip for cifar and image folders) and image_size
    32 for every data set; read back they mean what they meant, and a run started with them
    compares equal to the same run configured today."""
    old = {"arch": "mlp_32", "data": {"name": "digits", "augment": None, "image_size": 32}}
    today = TrainConfig(arch="mlp_32").model_dump(mode="json")
    assert TrainConfig.model_validate(stored_config(old)).model_dump(mode="json") == today
    folder = {"name": "image_folder", "root": "f", "augment": None, "image_size": 32}
    back = TrainConfig.model_validate(stored_config({"arch": "mlp_32", "data": folder}))
    assert back.data.augment == "crop+flip" and back.data.image_size == 32
    new = TrainConfig(arch="mlp_32", data={"name": "image_folder", "root": "f"})
    assert stored_config(new.model_dump(mode="json")) == new.model_dump(mode="json")
