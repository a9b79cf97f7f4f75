"""Run configuration: the standard CIFAR distillation recipe by default, every part overridable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pcd_core.data import AUGMENTS, DATASET_NAMES, Augment, as_augment, default_augment
from pcd_core.methods import METHODS, needs_teacher, parse_options
from pcd_core.models import MODELS, model_family

# MobileNet and ShuffleNet students use lr 0.01 in the standard recipe (CRD, mdistiller).
_LOW_LR_FAMILIES = {"mobilenet", "shufflenet"}


class DataConfig(BaseModel):
    """Which data, how it is split, and how it is augmented."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("digits", description=f"one of {', '.join(DATASET_NAMES)}")
    root: Path | None = Field(None, description="data folder (not needed for digits)")
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="held-out part of train")
    seed: int = Field(0, ge=0, description="data seed: split, batch order, augmentation")
    augment: Augment | None = Field(
        None,
        description=f"one of {', '.join(AUGMENTS)} (true/false: crop+flip/none); default: "
        "crop+flip for cifar10/cifar100, none for the others (image folders included)",
    )
    image_size: int | None = Field(
        None,
        ge=4,
        description="image folders only: resize to this side; default: the images' own size",
    )
    streaming: bool = Field(
        False, description="image folders too large for memory: decode batches in workers"
    )
    num_workers: int = Field(2, ge=0, description="decoding workers when streaming")

    @field_validator("augment", mode="before")
    @classmethod
    def _augment_name(cls, value: object) -> object:
        """Old configs wrote a bool: true is crop+flip, false none."""
        if value is None:
            return None
        if isinstance(value, bool | str):
            return as_augment(value)
        return value

    @model_validator(mode="after")
    def _defaults(self) -> DataConfig:
        """The per-data-set augmentation is written into the config (it records what ran)."""
        if self.augment is None:
            object.__setattr__(self, "augment", default_augment(self.name))
        return self

    @model_validator(mode="after")
    def _folders_only(self) -> DataConfig:
        if self.streaming and self.name != "image_folder":
            raise ValueError("streaming applies to image_folder data only")
        if self.image_size is not None and self.name != "image_folder":
            raise ValueError("image_size applies to image_folder data only")
        return self

    @property
    def augmentation(self) -> Augment:
        """The augmentation of the training batches (never None once validated)."""
        return self.augment or default_augment(self.name)

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        key = name.strip().lower().replace("-", "_")
        if key not in DATASET_NAMES:
            raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
        return key


# CLI default epochs per data set: the CIFAR recipe's 240, and a short run for small data.
_RECIPE_EPOCHS = 240
_SHORT_EPOCHS = 20


def default_epochs(name: str) -> int:
    """The epochs the CLI trains for when --epochs is left out: 240 (the recipe) for
    cifar10/cifar100, 20 for digits, mnist, fashion_mnist and image folders."""
    key = name.strip().lower().replace("-", "_")
    return _RECIPE_EPOCHS if key in ("cifar10", "cifar100") else _SHORT_EPOCHS


def stored_config(config: dict[str, Any]) -> dict[str, Any]:
    """A config written before augmentation had names and image folders kept their size
    (``augment`` true, false or null, ``image_size`` 32 for every data set), in today's
    terms: true/false as crop+flip/none, null as the old per-data-set default (image folders
    were cropped and flipped), and no image_size outside image folders. Newer configs come
    back unchanged."""
    data = config.get("data")
    if not isinstance(data, dict) or "augment" not in data:
        return config
    augment = data["augment"]
    if augment is not None and not isinstance(augment, bool):
        return config
    data = dict(data)
    name = str(data.get("name", "digits")).strip().lower().replace("-", "_")
    if augment is None:
        augment = name in ("cifar10", "cifar100", "image_folder")
    data["augment"] = as_augment(augment)
    if name != "image_folder":
        data.pop("image_size", None)
    return {**config, "data": data}


class TrainConfig(BaseModel):
    """One training run: a teacher (method ``ce``) or a distilled student."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: DataConfig = Field(default_factory=DataConfig)
    arch: str = Field(..., description="model name from pcd_core.models")
    method: str = Field("ce", description=f"one of {', '.join(METHODS)}")
    method_options: dict[str, Any] = Field(default_factory=dict)
    teacher: Path | None = Field(None, description="teacher checkpoint (distillation methods)")
    teacher_hash: str | None = Field(None, description="expected content hash of the teacher")
    epochs: int = Field(240, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float | None = Field(None, gt=0.0, description="default 0.05 (0.01 MobileNet/ShuffleNet)")
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(5e-4, ge=0.0)
    lr_milestones: tuple[float, ...] = Field(
        (0.625, 0.75, 0.875), description="fractions of the epochs where lr is multiplied"
    )
    lr_gamma: float = Field(0.1, gt=0.0)
    seed: int = Field(0, ge=0, description="model init and dropout seed")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N")
    amp: bool | None = Field(None, description="bf16 autocast; default on for CUDA")
    channels_last: bool | None = Field(None, description="default on for CUDA")
    logit_bank: Path | None = Field(None, description="folder of cached teacher logits")
    hard_class_fraction: float = Field(0.2, gt=0.0, le=1.0)
    test_each_epoch: bool = Field(
        False,
        description="also evaluate test after every epoch, for the literature's best-epoch "
        "number (selected on test: reporting only, never a tuning metric)",
    )

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, arch: str) -> str:
        if arch not in MODELS:
            raise ValueError(f"unknown model {arch!r}; see `pcd models list`")
        return arch

    @field_validator("lr_milestones")
    @classmethod
    def _fractions(cls, milestones: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0.0 < m < 1.0 for m in milestones) or list(milestones) != sorted(milestones):
            raise ValueError("lr_milestones must be increasing fractions in (0, 1)")
        return milestones

    @model_validator(mode="after")
    def _method(self) -> TrainConfig:
        parse_options(self.method, self.method_options)  # raises MethodOptionError
        distils = needs_teacher(self.method)
        if distils and self.teacher is None:
            raise ValueError(f"method {self.method!r} needs a teacher checkpoint (teacher=...)")
        if not distils and self.teacher is not None:
            raise ValueError(f"method {self.method!r} does not use a teacher; drop teacher=")
        return self

    @property
    def learning_rate(self) -> float:
        """The configured lr, or the recipe's default for this architecture."""
        if self.lr is not None:
            return self.lr
        return 0.01 if model_family(self.arch) in _LOW_LR_FAMILIES else 0.05

    def milestone_epochs(self) -> list[int]:
        """Epochs after which the lr drops (150/180/210 of 240)."""
        return sorted({max(1, round(m * self.epochs)) for m in self.lr_milestones})
