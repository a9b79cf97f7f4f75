"""The method registry: every training objective, registered once, with a typed option schema.

A method turns (student logits, teacher logits, labels, epoch) into a dict of *named, already
weighted* loss terms whose sum is the training loss (mdistiller's contract). Options are
pydantic models: unknown or out-of-range options are rejected with a message that names the
option and what is allowed. Nothing here can import code: options are plain data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from torch import Tensor

from pcd_core.losses import (
    Direction,
    JointSchedule,
    PhasedSchedule,
    Ranking,
    Split,
    Weighting,
    dkd_parts,
    kd_loss,
    pcd_loss,
    released_pcd_loss,
)
from pcd_core.losses._common import compute_dtype

# The paper's recipe warms the distillation term up over 20 of 240 epochs; scaled to the run.
DEFAULT_WARMUP_FRACTION = 20 / 240


def _fp32_or_64(logits: Tensor) -> Tensor:
    """Cross-entropy in float32 under autocast (bf16 logits), float64 kept for tests."""
    return logits.to(compute_dtype(logits))


class MethodOptionError(ValueError):
    """An unknown method, an unknown option or an option value out of range."""


class Method(Protocol):
    """What the trainer needs from a method."""

    name: str

    @property
    def needs_teacher(self) -> bool:
        """Whether the method distils from a teacher (the registry's MethodSpec says)."""

    def check(self, num_classes: int) -> None:
        """Raise MethodOptionError if the options cannot work with this many classes."""

    def losses(
        self,
        student_logits: Tensor,
        teacher_logits: Tensor | None,
        target: Tensor,
        *,
        epoch: int,
        total_epochs: int,
    ) -> dict[str, Tensor]:
        """Named, weighted loss terms for one batch; their sum is the training loss."""


class _Registered:
    """A registered method's facts live in its MethodSpec, read here by ``name``."""

    name: str

    @property
    def needs_teacher(self) -> bool:
        return METHODS[self.name].needs_teacher


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _warmup_factor(epoch: int, total_epochs: int, warmup: float | None) -> float:
    """``min(epoch / warmup, 1)``, epochs counted from 1 (as in DKD)."""
    span = DEFAULT_WARMUP_FRACTION * total_epochs if warmup is None else warmup
    return 1.0 if span <= 0 else min(epoch / span, 1.0)


# ---------------------------------------------------------------------------------------- ce
class CEOptions(_Options):
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0, description="label smoothing of the CE")


@dataclass(frozen=True)
class CEMethod(_Registered):
    options: CEOptions
    name: str = "ce"

    def check(self, num_classes: int) -> None:
        return None

    def losses(self, student_logits, teacher_logits, target, *, epoch, total_epochs):
        ce = F.cross_entropy(
            _fp32_or_64(student_logits), target, label_smoothing=self.options.label_smoothing
        )
        return {"ce": ce}


# ---------------------------------------------------------------------------------------- kd
# Past this, the softened distributions of any real logits are all but uniform: a typo, not a
# setting (the usual range is 1 to 8).
MAX_TEMPERATURE = 100.0


class KDOptions(_Options):
    temperature: float = Field(4.0, gt=0.0, le=MAX_TEMPERATURE, description="softmax temperature T")
    ce_weight: float = Field(0.1, ge=0.0, description="weight of the cross-entropy term")
    kd_weight: float = Field(0.9, ge=0.0, description="weight of the T^2 KL term")
    standardize: bool = Field(False, description="logit standardisation before the KL")


@dataclass(frozen=True)
class KDMethod(_Registered):
    options: KDOptions
    name: str = "kd"

    def check(self, num_classes: int) -> None:
        return None

    def losses(self, student_logits, teacher_logits, target, *, epoch, total_epochs):
        o = self.options
        kd = kd_loss(
            student_logits, teacher_logits, temperature=o.temperature, standardize=o.standardize
        )
        ce = F.cross_entropy(_fp32_or_64(student_logits), target)
        return {"ce": o.ce_weight * ce, "kd": o.kd_weight * kd}


# --------------------------------------------------------------------------------------- dkd
class DKDOptions(_Options):
    alpha: float = Field(1.0, ge=0.0, description="weight of the target-class term (TCKD)")
    beta: float = Field(8.0, ge=0.0, description="weight of the non-target term (NCKD)")
    temperature: float = Field(4.0, gt=0.0, le=MAX_TEMPERATURE, description="softmax temperature T")
    ce_weight: float = Field(1.0, ge=0.0, description="weight of the cross-entropy term")
    warmup: float | None = Field(
        None, ge=0.0, description="warm-up epochs; default 1/12 of the run (20 of 240)"
    )
    standardize: bool = Field(False, description="logit standardisation before the KL terms")


@dataclass(frozen=True)
class DKDMethod(_Registered):
    options: DKDOptions
    name: str = "dkd"

    def check(self, num_classes: int) -> None:
        if num_classes < 3:
            raise MethodOptionError(
                f"dkd needs at least 3 classes (its non-target term is undefined for "
                f"{num_classes}); use kd or pcd"
            )

    def losses(self, student_logits, teacher_logits, target, *, epoch, total_epochs):
        o = self.options
        tckd, nckd = dkd_parts(
            student_logits,
            teacher_logits,
            target,
            temperature=o.temperature,
            standardize=o.standardize,
        )
        ramp = _warmup_factor(epoch, total_epochs, o.warmup)
        ce = F.cross_entropy(_fp32_or_64(student_logits), target)
        return {
            "ce": o.ce_weight * ce,
            "tckd": ramp * o.alpha * tckd,
            "nckd": ramp * o.beta * nckd,
        }


# --------------------------------------------------------------------------------------- pcd
class PCDOptions(_Options):
    temperature: float = Field(4.0, gt=0.0, le=MAX_TEMPERATURE, description="softmax temperature T")
    alpha: float = Field(1.0, ge=0.0, description="weight of the PCD term")
    ce_weight: float = Field(1.0, ge=0.0, description="weight of the cross-entropy term")
    warmup: float | None = Field(
        None, ge=0.0, description="warm-up epochs; default 1/12 of the run (20 of 240)"
    )
    stages: int = Field(3, ge=1, le=64, description="number of stages S (3 same family, 5 cross)")
    schedule: Literal["joint", "phased", "released"] = Field(
        "joint",
        description="joint: all stages every step; phased: 2S curriculum phases; "
        "released: the authors' public code (rescaled full-class KD)",
    )
    directions: Direction = Field(
        "both", description="fine-to-coarse, coarse-to-fine or both passes"
    )
    ranking: Ranking = Field(
        "abs_gap", description="class priority: |t - s|, teacher logit, or class index"
    )
    split: Split = Field("even", description="how a stage cuts groups")
    split_ratio: float | None = Field(
        None, gt=0.0, description="ratio r of the geometric split (default 2.0)"
    )
    weighting: Weighting = Field(
        "paper", description="group weight: 1 - cos(p, q), 1, or 1 - cos(p, log q)"
    )
    standardize: bool = Field(False, description="logit standardisation (usual: T=2, alpha=9)")
    detach_weight: bool = Field(False, description="stop the gradient through the group weight")
    stage_norm: bool = Field(False, description="divide by the number of active stage terms")

    @model_validator(mode="after")
    def _ratio_only_with_geometric(self) -> PCDOptions:
        if self.split_ratio is not None and self.split != "geometric":
            raise ValueError("split_ratio is only used with split='geometric'")
        if self.schedule == "released" and (
            self.ranking != "abs_gap" or self.split != "even" or self.weighting != "paper"
        ):
            raise ValueError(
                "schedule='released' reproduces the authors' code, which has no ranking, "
                "split or weighting choice; leave ranking, split and weighting at defaults"
            )
        return self


@dataclass(frozen=True)
class PCDMethod(_Registered):
    options: PCDOptions
    name: str = "pcd"
    # the schedule per run length, built once (the step reads it every batch)
    _schedules: dict[int, JointSchedule | PhasedSchedule] = field(
        default_factory=dict, compare=False, repr=False
    )

    def check(self, num_classes: int) -> None:
        if self.options.schedule != "released" and self.options.stages > num_classes:
            raise MethodOptionError(
                f"pcd option 'stages': {self.options.stages} stages need at least as many "
                f"classes, the dataset has {num_classes}"
            )

    def group_counts(self, epoch: int, total_epochs: int) -> list[int]:
        """The stage list used at ``epoch`` (1-based) of a ``total_epochs`` run."""
        schedule = self._schedules.get(total_epochs)
        if schedule is None:
            o = self.options
            schedule = (
                PhasedSchedule(o.stages, total_epochs, o.directions)
                if o.schedule == "phased"
                else JointSchedule(o.stages, o.directions)
            )
            self._schedules[total_epochs] = schedule
        return schedule.group_counts(epoch)

    def losses(self, student_logits, teacher_logits, target, *, epoch, total_epochs):
        o = self.options
        if o.schedule == "released":
            term = released_pcd_loss(
                student_logits,
                teacher_logits,
                temperature=o.temperature,
                stages=o.stages,
                standardize=o.standardize,
            )
        else:
            term = pcd_loss(
                student_logits,
                teacher_logits,
                temperature=o.temperature,
                group_counts=self.group_counts(epoch, total_epochs),
                ranking=o.ranking,
                split=o.split,
                split_ratio=2.0 if o.split_ratio is None else o.split_ratio,
                weighting=o.weighting,
                standardize=o.standardize,
                detach_weight=o.detach_weight,
                stage_norm=o.stage_norm,
            )
        ramp = _warmup_factor(epoch, total_epochs, o.warmup)
        ce = F.cross_entropy(_fp32_or_64(student_logits), target)
        return {"ce": o.ce_weight * ce, "pcd": ramp * o.alpha * term}


# ---------------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class MethodSpec:
    """A registered method: its option schema, its constructor, a one-line summary and
    whether it distils from a teacher (a fact of the method, whatever its options)."""

    options: type[_Options]
    factory: Callable[[Any], Method]
    summary: str
    needs_teacher: bool


METHODS: dict[str, MethodSpec] = {
    "ce": MethodSpec(CEOptions, CEMethod, "cross-entropy only (no teacher)", False),
    "kd": MethodSpec(KDOptions, KDMethod, "Hinton et al. 2015, knowledge distillation", True),
    "dkd": MethodSpec(DKDOptions, DKDMethod, "Zhao et al. 2022, decoupled KD", True),
    "pcd": MethodSpec(PCDOptions, PCDMethod, "Li et al. 2025, progressive class-level KD", True),
}


def _spec(name: str) -> MethodSpec:
    if name not in METHODS:
        raise MethodOptionError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]


def _describe_error(method: str, options: type[_Options], err: ValidationError) -> str:
    messages = []
    allowed = ", ".join(options.model_fields)
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"])
        if e["type"] == "extra_forbidden":
            messages.append(f"unknown option {loc!r}; allowed options: {allowed}")
        elif loc:
            messages.append(f"option {loc!r}: {e['msg']} (got {e.get('input')!r})")
        else:
            messages.append(e["msg"].removeprefix("Value error, "))
    return f"{method}: " + "; ".join(messages)


def parse_options(name: str, options: Mapping[str, Any] | None = None) -> _Options:
    """Validate ``options`` for method ``name`` (strings are coerced, as from a CLI)."""
    spec = _spec(name)
    try:
        return spec.options.model_validate(dict(options or {}))
    except ValidationError as err:
        raise MethodOptionError(_describe_error(name, spec.options, err)) from None


def method_spec(name: str) -> MethodSpec:
    """The registered method ``name`` (MethodOptionError names the choices if unknown)."""
    return _spec(name)


def needs_teacher(name: str) -> bool:
    """Whether method ``name`` distils from a teacher (``ce`` trains one: it does not)."""
    return _spec(name).needs_teacher


def build_method(name: str, options: Mapping[str, Any] | None = None) -> Method:
    """The method ``name`` with validated ``options`` (defaults for everything not given)."""
    return _spec(name).factory(parse_options(name, options))


def method_defaults(name: str) -> dict[str, Any]:
    """Every option of ``name`` with its default value."""
    return _spec(name).options().model_dump()


def options_schema(name: str) -> dict[str, Any]:
    """The JSON schema of the options of ``name``."""
    return _spec(name).options.model_json_schema()
