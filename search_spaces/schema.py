"""The study specification: a pydantic schema for YAML search spaces.

A spec names the data, the teacher (a stored checkpoint or one to train), the student, the
method and its search space, the objective, the budget, the scheduler, the sampler and the
resources per trial. Every rule is checked when the file is loaded; an error names the file,
the parameter and the rule broken. Nothing in a spec can import or run code.
"""

from __future__ import annotations

import math
import re
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    ValidationError,
    model_serializer,
    model_validator,
)

from pcd_core.data import AUGMENTS, DATASET_NAMES, Augment
from pcd_core.methods import METHODS, MethodOptionError, parse_options
from pcd_core.models import MODELS

# Training options a space may search besides the method's own options.
TRAINING_PARAMS = ("lr", "weight_decay", "batch_size", "momentum")
# Most configurations a grid may have (Optuna's grid sampler lists them all).
MAX_GRID = 100_000
# Most search trials a study may have (its budget can be raised up to this while it runs).
MAX_TRIALS = 10_000
# Seeds feed numpy's and Python's generators, which take 32 bits.
MAX_SEED = 2**32 - 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class _Param(_Strict):
    when: dict[str, str | int | float | bool | None] | None = Field(
        None, description="only sampled when these other parameters have these values"
    )


class FloatParam(_Param):
    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _bounds(self) -> FloatParam:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log-uniform range needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("step and log cannot be combined")
        return self

    def count(self) -> int:
        """Number of grid values (2, the ends, without a step), computed, not enumerated."""
        if self.step is None:
            return 2
        return math.floor((self.high - self.low) / self.step + 1e-9) + 1

    def values(self) -> list[Any]:
        """The grid of a stepped range, else its two ends (only for a bounded grid)."""
        if self.step is None:
            return [self.low, self.high]
        return [round(self.low + i * self.step, 12) for i in range(self.count())]

    def extremes(self) -> list[Any]:
        """The smallest and largest value (what an option's bounds are checked against)."""
        if self.step is None:
            return [self.low, self.high]
        return [self.low, round(self.low + (self.count() - 1) * self.step, 12)]

    def contains(self, value: Any) -> bool:
        return _is_number(value) and self.low <= value <= self.high


class IntParam(_Param):
    type: Literal["int"]
    low: int
    high: int = Field(description="inclusive")
    log: bool = False
    step: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _bounds(self) -> IntParam:
        if not self.low <= self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        if self.log and self.low < 1:
            raise ValueError("a log-uniform int range needs low >= 1")
        return self

    def count(self) -> int:
        return (self.high - self.low) // self.step + 1

    def values(self) -> list[Any]:
        """Every value (only for a bounded grid: see count)."""
        return list(range(self.low, self.high + 1, self.step))

    def extremes(self) -> list[Any]:
        return [self.low, self.low + (self.count() - 1) * self.step]

    def contains(self, value: Any) -> bool:
        return (
            isinstance(value, int)
            and not isinstance(value, bool)
            and self.low <= value <= self.high
            and (value - self.low) % self.step == 0
        )


class CategoricalParam(_Param):
    type: Literal["categorical"]
    choices: list[str | int | float | bool] = Field(min_length=1)

    def count(self) -> int:
        return len(self.choices)

    def values(self) -> list[Any]:
        return list(self.choices)

    extremes = values

    def contains(self, value: Any) -> bool:
        return value in self.choices


class FixedParam(_Param):
    type: Literal["fixed"]
    value: str | int | float | bool | None

    def count(self) -> int:
        return 1

    def values(self) -> list[Any]:
        return [self.value]

    extremes = values

    def contains(self, value: Any) -> bool:
        return value == self.value


Param = Annotated[
    FloatParam | IntParam | CategoricalParam | FixedParam, Field(discriminator="type")
]
_PARAM: TypeAdapter[Any] = TypeAdapter(Param)


_DATA_OPTIONS = ("augment", "image_size")


class DataSpec(_Strict):
    name: str = "digits"
    root: str | None = Field(None, description="folder name under the configured data root")
    val_fraction: float = Field(0.1, gt=0.0, lt=1.0, description="tuning is on val: > 0")
    seed: int = Field(0, ge=0, le=MAX_SEED)
    augment: Augment | None = Field(
        None,
        description=f"training-batch augmentation, one of {', '.join(AUGMENTS)}; unset: "
        "crop+flip for cifar10/cifar100, none for the others (image folders included: flips "
        "and crops change digits, text and left/right labels)",
    )
    image_size: int | None = Field(
        None,
        ge=4,
        le=1024,
        description="image_folder only: resize images to this side; unset: their own size "
        "(all must share it)",
    )

    @model_validator(mode="after")
    def _known(self) -> DataSpec:
        if self.name not in DATASET_NAMES:
            raise ValueError(f"unknown dataset {self.name!r}; one of {', '.join(DATASET_NAMES)}")
        if self.image_size is not None and self.name != "image_folder":
            raise ValueError("image_size applies to image_folder data only")
        return self

    @model_serializer(mode="wrap")
    def _without_unset_options(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """augment / image_size appear when given: specs stored before they existed dump
        the same as they did."""
        out = handler(self)
        return {k: v for k, v in out.items() if v is not None or k not in _DATA_OPTIONS}


class TrainingSpec(_Strict):
    """Fixed training settings, within the bounds pcd_core's TrainConfig accepts (and sane
    upper ones). Unset: the trainer's default; epochs: budget.max_epochs; seed: the study's
    seed (the model-init seed of every trial)."""

    lr: float | None = Field(None, gt=0.0, le=10.0)
    weight_decay: float | None = Field(None, ge=0.0, le=1.0)
    batch_size: int | None = Field(None, ge=1, le=65536)
    momentum: float | None = Field(None, ge=0.0, lt=1.0)
    epochs: int | None = Field(None, ge=1)
    seed: int | None = Field(None, ge=0, le=MAX_SEED)

    @model_serializer(mode="wrap")
    def _only_set(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}  # as it was given

    def fixed(self) -> dict[str, Any]:
        """The fixed values of the options a space may also search (TRAINING_PARAMS)."""
        return {k: v for k in TRAINING_PARAMS if (v := getattr(self, k)) is not None}


class TeacherSpec(_Strict):
    """Either ``checkpoint`` (a stored teacher, by name, with its hash) or ``arch`` + ``epochs``
    to train one once for the study."""

    checkpoint: str | None = None
    hash: str | None = None
    arch: str | None = None
    epochs: int = Field(20, ge=1)
    lr: float | None = Field(None, gt=0, le=10.0)

    @model_validator(mode="after")
    def _one(self) -> TeacherSpec:
        if (self.checkpoint is None) == (self.arch is None):
            raise ValueError("give either checkpoint (a stored teacher) or arch (train one)")
        if self.arch is not None and self.arch not in MODELS:
            raise ValueError(f"unknown teacher arch {self.arch!r}; see `pcd models list`")
        return self


class Objective(_Strict):
    metric: Literal["val_top1", "val_top5", "val_hard_top1", "val_loss"] = Field(
        "val_top1", description="a per-epoch validation metric (never a test metric)"
    )
    mode: Literal["max", "min"] = "max"
    goal: float | None = Field(
        None,
        description="stop the search once a trial's <metric> at its best epoch reaches this "
        "value (at least it for mode max, at most for min); running trials are stopped and "
        "the study is promoted as usual",
    )

    @model_validator(mode="after")
    def _direction(self) -> Objective:
        expected = "min" if self.metric == "val_loss" else "max"
        if self.mode != expected:
            raise ValueError(f"{self.metric} is optimised with mode={expected!r}")
        return self


class SecondObjective(_Strict):
    metric: Literal["student_params"] = "student_params"
    mode: Literal["min"] = "min"


class Budget(_Strict):
    trials: int = Field(
        8,
        ge=0,
        le=MAX_TRIALS,
        description="search trials; 0: a fixed-configuration study (every space parameter "
        "fixed, no search: the point is trained over the promotion seeds)",
    )
    max_epochs: int = Field(10, ge=1)
    time_limit_s: float | None = Field(None, gt=0)
    max_failed_trials: int | None = Field(
        None,
        ge=1,
        description="end the study as failed once this many trials have failed (after their "
        "retries, max_failures); none: no limit",
    )


class Scheduler(_Strict):
    type: Literal["asha", "none"] = "asha"
    grace_period: int = Field(1, ge=1)
    reduction_factor: float = Field(2.0, gt=1.0)


class Sampler(_Strict):
    type: Literal["tpe", "random", "grid", "cmaes", "nsga2"] = "tpe"


# Per trial; a node larger than this is not built. (Whether the cluster has such a node is
# checked by the study driver against the cluster itself.)
MAX_TRIAL_CPUS = 1024
MAX_TRIAL_GPUS = 16


class Resources(_Strict):
    cpus: float = Field(1.0, gt=0, le=MAX_TRIAL_CPUS)
    gpus: float = Field(0.0, ge=0, le=MAX_TRIAL_GPUS)


class Promotion(_Strict):
    seeds: int = Field(3, ge=0, le=20, description="retrain the best config on train+val")
    baselines: list[Literal["kd", "dkd"]] = Field(default_factory=list)
    test_each_epoch: bool = Field(
        False,
        description="also evaluate test after every epoch and report the best epoch's test "
        "top-1 (the literature's 'best'; selected on test, so reported beside the last epoch)",
    )
    registered_model_name: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$",
        description="register the promoted student (seed 0, last epoch) in MLflow's model "
        "registry under this name; a new version per study. Unset: the model is logged to "
        "the run 'promoted seed 0' only",
    )


COMPARISON_METHODS_DIR = Path(__file__).parent / "methods"  # default comparison spaces
Scalar = str | int | float | bool | None


class ComparisonEntry(_Strict):
    """One entry of a comparison: a method, its fixed options, the space its options are
    tuned over (unset: the method's default comparison space, search_spaces/methods/), or
    ``tuned_from`` another entry (no search: that entry's tuned options, then ``fixed``)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.=+ -]{0,63}$")
    method: str
    fixed: dict[str, Scalar] = Field(default_factory=dict)
    space: dict[str, Param] | None = Field(
        None, description="unset: the method's default comparison space ({} for ce)"
    )
    tuned_from: str | None = Field(
        None, description="an entry whose tuned options this one takes (an ablation)"
    )

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, raw: Any) -> Any:
        return {"name": raw, "method": raw} if isinstance(raw, str) else raw

    @model_validator(mode="after")
    def _no_space_when_derived(self) -> ComparisonEntry:
        if self.tuned_from is not None and self.space:
            raise ValueError(f"{self.name}: tuned_from takes no space (it runs no search)")
        return self

    @property
    def slug(self) -> str:
        """The entry's name as a file / experiment name."""
        return re.sub(r"[^A-Za-z0-9_.-]", "_", self.name)

    def resolved_space(self) -> dict[str, Param]:
        """Its space (default or given) with ``fixed`` as fixed parameters."""
        space = dict(default_space(self.method) if self.space is None else self.space)
        for key, value in self.fixed.items():
            space.pop(key, None)
            space[key] = FixedParam(type="fixed", value=value)
        return space

    def searches(self) -> bool:
        """Whether the entry is tuned (a search); else trained over the seeds only."""
        return self.tuned_from is None and any(
            not isinstance(p, FixedParam) for p in self.resolved_space().values()
        )


def default_space(method: str) -> dict[str, Param]:
    """A method's default comparison space ({} for ce: nothing to tune)."""
    return dict(_default_space(method))


@cache
def _default_space(method: str) -> dict[str, Param]:  # parameters are frozen: shared safely
    if method == "ce":
        return {}
    path = COMPARISON_METHODS_DIR / f"{method}.yaml"
    if not path.is_file():
        raise ValueError(f"method {method!r} has no default comparison space; give space")
    raw = yaml.safe_load(path.read_text()) or {}
    return {k: _PARAM.validate_python(v) for k, v in raw.items()}


COMPARISON_PRESETS_DIR = Path(__file__).parent / "comparisons"  # shipped comparisons


def comparison_presets() -> list[str]:
    """Names of the shipped comparisons (``comparison.preset``, ``pcd compare --preset``)."""
    return sorted(p.stem for p in COMPARISON_PRESETS_DIR.glob("*.yaml"))


@cache
def _preset_file(name: str) -> dict[str, Any]:
    return yaml.safe_load((COMPARISON_PRESETS_DIR / f"{name}.yaml").read_text()) or {}


def comparison_preset(name: str) -> dict[str, Any]:
    """A shipped comparison's entries and reference (ValueError naming the known ones)."""
    if name not in comparison_presets():
        raise ValueError(f"unknown preset {name!r}; one of {', '.join(comparison_presets())}")
    raw = _preset_file(name)
    return {"entries": raw["entries"], "reference": raw.get("reference")}


def preset_questions(name: str) -> dict[str, str]:
    """What each entry of a shipped comparison tests (its difference to the reference)."""
    return dict(_preset_file(name).get("questions") or {})


class ComparisonSpec(_Strict):
    """A comparison study: each entry tuned on val with the study's budget and sampler (the
    same for all), then trained over ``seeds`` seeds and compared to ``reference`` seed by
    seed. ``preset`` names a shipped comparison (search_spaces/comparisons/) whose entries
    and reference it stands for; the stored spec holds them expanded."""

    entries: list[ComparisonEntry] = Field(min_length=2)
    reference: str | None = Field(
        None,
        description="an entry name; unset: the first tuned entry of method pcd, else the "
        "first entry",
    )
    seeds: int = Field(3, ge=1, le=20, description="seeds 0..N-1 of every entry")

    @model_validator(mode="before")
    @classmethod
    def _expand_preset(cls, raw: Any) -> Any:
        if not isinstance(raw, dict) or "preset" not in raw:
            return raw
        raw = dict(raw)
        name = raw.pop("preset")
        if "entries" in raw:
            raise ValueError("preset: give either a preset or entries, not both")
        if not isinstance(name, str):
            raise ValueError(f"preset: a name, one of {', '.join(comparison_presets())}")
        try:
            preset = comparison_preset(name)
        except ValueError as err:
            raise ValueError(f"preset: {err}") from None
        raw["entries"] = preset["entries"]
        if raw.get("reference") is None:
            raw["reference"] = preset["reference"]
        return raw

    @model_validator(mode="after")
    def _names(self) -> ComparisonSpec:
        names = [e.name for e in self.entries]
        slugs = [e.slug for e in self.entries]
        for i, entry in enumerate(self.entries):
            if entry.method not in METHODS:
                raise ValueError(
                    f"entries[{i}].method: unknown method {entry.method!r}; "
                    f"one of {', '.join(METHODS)}"
                )
            if entry.name in names[:i] or entry.slug in slugs[:i]:
                raise ValueError(f"entries[{i}].name: {entry.name!r} is not unique")
        if self.reference is not None and self.reference not in names:
            raise ValueError(
                f"reference: {self.reference!r} is not an entry; one of {', '.join(names)}"
            )
        self._check_tuned_from(names)
        return self

    def _check_tuned_from(self, names: list[str]) -> None:
        by_name = {e.name: e for e in self.entries}
        for i, entry in enumerate(self.entries):
            field = f"entries[{i}].tuned_from"
            if entry.tuned_from is None:
                continue
            if entry.tuned_from not in names:
                raise ValueError(f"{field}: {entry.tuned_from!r} is not an entry")
            source = by_name[entry.tuned_from]
            if source.tuned_from is not None:
                raise ValueError(
                    f"{field}: {entry.tuned_from!r} is itself tuned_from another entry (a "
                    "cycle or a chain): name a tuned entry"
                )

    def entry(self, name: str) -> ComparisonEntry:
        return next(e for e in self.entries if e.name == name)

    def searched(self) -> int:
        """How many entries are tuned (each gets the study's trial budget)."""
        return sum(e.searches() for e in self.entries)

    @property
    def reference_name(self) -> str:
        if self.reference is not None:
            return self.reference
        tuned_pcd = [e.name for e in self.entries if e.method == "pcd" and e.searches()]
        return tuned_pcd[0] if tuned_pcd else self.entries[0].name


def _with_option(fixed: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
    """Method options with ``name`` set to ``value``: split_ratio needs split=geometric (the
    conditional rule is checked separately)."""
    options = {**fixed, name: value}
    if name == "split_ratio":
        options["split"] = "geometric"
    elif "split_ratio" in options and options.get("split") != "geometric":
        options.pop("split_ratio")
    return options


def _check_training_values(name: str, param: Any) -> None:
    """A searched training option's extremes must be legal fixed values of it."""
    for value in param.extremes():
        try:
            TrainingSpec.model_validate({name: value})
        except ValidationError as err:
            reason = err.errors()[0]["msg"]
            raise ValueError(f"space.{name}: value {value!r} is not allowed: {reason}") from None


class StudySpec(_Strict):
    """One study: what to search, how, and with what budget."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    description: str = ""
    data: DataSpec = Field(default_factory=DataSpec)
    teacher: TeacherSpec
    student: str
    method: str = "pcd"
    training: TrainingSpec = Field(
        default_factory=TrainingSpec,
        description="fixed training settings (lr, weight_decay, batch_size, momentum, epochs, "
        "seed: the model-init seed of every trial, default the study seed)",
    )
    space: dict[str, Param] = Field(default_factory=dict)
    objective: Objective = Field(default_factory=Objective)
    second_objective: SecondObjective | None = None
    budget: Budget = Field(default_factory=Budget)
    scheduler: Scheduler = Field(default_factory=Scheduler)
    sampler: Sampler = Field(default_factory=Sampler)
    resources: Resources = Field(default_factory=Resources)
    concurrency: int = Field(2, ge=1)
    max_failures: int = Field(1, ge=0, description="retries of a failed trial")
    seed: int = Field(0, ge=0, le=MAX_SEED)
    promotion: Promotion = Field(default_factory=Promotion)
    comparison: ComparisonSpec | None = Field(
        None,
        description="a comparison study: entries (methods) tuned with the same budget and "
        "sampler, then trained over seeds and compared to a reference entry",
    )

    @model_serializer(mode="wrap")
    def _without_unset_comparison(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """comparison appears when given: search specs dump the same as they did."""
        out = handler(self)
        if out.get("comparison") is None:
            out.pop("comparison", None)
        return out

    @model_validator(mode="before")
    @classmethod
    def _training_keys(cls, raw: Any) -> Any:
        training = raw.get("training") if isinstance(raw, dict) else None
        for key in training if isinstance(training, dict) else ():
            if key not in TrainingSpec.model_fields:
                raise ValueError(
                    f"training.{key}: not a training option; allowed: "
                    f"{', '.join(TrainingSpec.model_fields)}"
                )
        return raw

    @model_validator(mode="after")
    def _consistent(self) -> StudySpec:
        if self.student not in MODELS:
            raise ValueError(f"student: unknown model {self.student!r}; see `pcd models list`")
        if self.method not in METHODS:
            raise ValueError(f"method: unknown method {self.method!r}; one of {', '.join(METHODS)}")
        option_names = set(METHODS[self.method].options.model_fields)
        for name in self.space:
            if name not in option_names and name not in TRAINING_PARAMS:
                raise ValueError(
                    f"space.{name}: not an option of method {self.method!r} nor a training "
                    f"option; allowed: {', '.join(sorted(option_names) + list(TRAINING_PARAMS))}"
                )
        for name, param in self.space.items():
            for other, value in (param.when or {}).items():
                names = list(self.space)
                if other not in self.space or names.index(other) >= names.index(name):
                    raise ValueError(
                        f"space.{name}.when: {other!r} must be a parameter listed before {name!r}"
                    )
                if not self.space[other].contains(value):
                    raise ValueError(
                        f"space.{name}.when: {other}={value!r} is not one of its values"
                    )
            if name in option_names:
                self._check_values(name, param)
            elif name in TRAINING_PARAMS:
                _check_training_values(name, param)
        if self.sampler.type == "grid":
            for name, param in self.space.items():
                if isinstance(param, FloatParam) and param.step is None:
                    raise ValueError(
                        f"space.{name}: grid sampling needs finite values: use categorical, int, "
                        "or float with step"
                    )
                if param.when:
                    raise ValueError(f"space.{name}: grid sampling does not take 'when' conditions")
            if self.grid_size() > MAX_GRID:
                raise ValueError(
                    f"space: a grid of {self.grid_size()} configurations; at most {MAX_GRID}"
                )
        if self.second_objective is not None and self.sampler.type not in (
            "nsga2",
            "tpe",
            "random",
        ):
            raise ValueError("sampler: a two-objective study needs nsga2, tpe or random")
        if self.budget.trials == 0:
            if self.promotion.seeds < 1:
                raise ValueError(
                    "budget.trials: 0 (a fixed-configuration study) needs promotion.seeds >= 1"
                )
            for name, param in self.space.items():
                if not isinstance(param, FixedParam) or param.when:
                    raise ValueError(
                        f"budget.trials: 0 (a fixed-configuration study) needs every space "
                        f"parameter fixed without 'when'; space.{name} is not"
                    )
        if self.scheduler.type == "asha" and self.scheduler.grace_period > self.budget.max_epochs:
            raise ValueError("scheduler.grace_period must not exceed budget.max_epochs")
        self._check_warmup()
        if self.comparison is not None:
            self._check_comparison(self.comparison)
        return self

    def _check_comparison(self, comparison: ComparisonSpec) -> None:
        """The study-level rules of a comparison, and each entry as a study of its own."""
        if self.space:
            raise ValueError(
                "space: a comparison tunes each entry's own space "
                "(comparison.entries[].space); leave space empty"
            )
        if self.promotion not in (Promotion(), Promotion(seeds=0)):
            raise ValueError(
                "promotion: a comparison has no promotion (its seeds are comparison.seeds); "
                "drop promotion"
            )
        if self.objective.goal is not None or self.budget.max_failed_trials is not None:
            raise ValueError(
                "objective.goal / budget.max_failed_trials: not supported by a comparison "
                "(every entry gets the whole budget)"
            )
        if self.second_objective is not None:
            raise ValueError("second_objective: a comparison ranks trials by one objective")
        if self.budget.trials < 1 and any(e.searches() for e in comparison.entries):
            raise ValueError("budget.trials: a comparison with tuned entries needs >= 1")
        for i, entry in enumerate(comparison.entries):
            try:
                self.entry_spec(entry, {})
            except (ValidationError, ValueError) as err:
                reason = (
                    err.errors()[0]["msg"] if isinstance(err, ValidationError) else str(err)
                ).removeprefix("Value error, ")
                raise ValueError(f"comparison.entries[{i}] ({entry.name}): {reason}") from None

    def entry_spec(self, entry: ComparisonEntry, tuned: dict[str, Any] | None = None) -> StudySpec:
        """A comparison entry as a study of its own (what its search and seed runs are
        configured from): this spec's data, teacher, student, budget and sampler with the
        entry's method and space. ``tuned`` (for ``tuned_from`` entries): the options taken
        from the source entry, fixed here under the entry's own ``fixed``."""
        assert self.comparison is not None
        if entry.tuned_from is not None:
            names = set(METHODS[entry.method].options.model_fields) | set(TRAINING_PARAMS)
            values = {k: v for k, v in (tuned or {}).items() if k in names}
            values.update(entry.fixed)
            space = {k: {"type": "fixed", "value": v} for k, v in values.items()}
        else:
            space = {k: p.model_dump(mode="json") for k, p in entry.resolved_space().items()}
        raw = self.model_dump(mode="json", exclude={"comparison", "space", "method", "promotion"})
        raw.update(method=entry.method, space=space, promotion={"seeds": self.comparison.seeds})
        return StudySpec.model_validate(raw)

    @property
    def kind(self) -> Literal["search", "comparison"]:
        return "search" if self.comparison is None else "comparison"

    def _check_warmup(self) -> None:
        """A warm-up longer than the run never reaches its full weight: refused."""
        param = self.space.get("warmup")
        numbers = [
            v
            for v in (param.extremes() if param is not None else [])
            if isinstance(v, int | float) and not isinstance(v, bool)
        ]
        if numbers and max(numbers) > self.budget.max_epochs:
            raise ValueError(
                f"space.warmup: {max(numbers):g} warm-up epochs exceed the run "
                f"(budget.max_epochs={self.budget.max_epochs})"
            )

    def _fixed_options(self) -> dict[str, Any]:
        return {k: p.value for k, p in self.space.items() if isinstance(p, FixedParam)}

    def _check_values(self, name: str, param: Any) -> None:
        """Every extreme or choice must be a legal value of the method option."""
        names = set(METHODS[self.method].options.model_fields)  # not fixed training options
        fixed = {k: v for k, v in self._fixed_options().items() if k in names}
        for value in param.extremes():  # bounds are intervals: the ends decide, never enumerate
            options = _with_option(fixed, name, value)
            try:
                parse_options(self.method, options)
            except MethodOptionError as err:
                raise ValueError(f"space.{name}: value {value!r} is not allowed: {err}") from None

    def check_classes(self, num_classes: int) -> None:
        """ValueError naming the field if the method (at the space's fixed values and the low
        end of each searched option, then at each end of each searched option) or a promotion
        baseline cannot work with ``num_classes`` classes (e.g. more PCD stages than classes).
        A comparison: each entry's own space."""
        for i, entry in enumerate(self.comparison.entries if self.comparison else []):
            try:
                self.entry_spec(entry, {}).check_classes(num_classes)
            except ValueError as err:
                raise ValueError(f"comparison.entries[{i}] ({entry.name}): {err}") from None
        names = set(METHODS[self.method].options.model_fields)
        searched = {
            k: p.extremes()
            for k, p in self.space.items()
            if k in names and not isinstance(p, FixedParam)
        }
        base = {k: v for k, v in self._fixed_options().items() if k in names}
        for name, ends in searched.items():
            base = _with_option(base, name, ends[0])
        points: list[tuple[str, str, dict[str, Any]]] = [("space", self.method, base)]
        for name, ends in searched.items():
            points += [(f"space.{name}", self.method, _with_option(base, name, v)) for v in ends]
        points += [("promotion.baselines", baseline, {}) for baseline in self.promotion.baselines]
        for field, method, options in points:
            try:
                parsed = parse_options(method, options)
            except MethodOptionError:  # a combination a condition rules out: not ours to judge
                continue
            try:
                METHODS[method].factory(parsed).check(num_classes)
            except MethodOptionError as err:
                raise ValueError(f"{field}: {err}") from None

    @property
    def is_fixed(self) -> bool:
        """A fixed-configuration study: no search, the fixed point is promoted directly."""
        return self.budget.trials == 0

    def fixed_config(self) -> dict[str, Any]:
        """The values of the fixed space parameters."""
        return {k: p.value for k, p in self.space.items() if isinstance(p, FixedParam)}

    def grid_size(self) -> int:
        """Number of configurations of a grid over the space."""
        return math.prod(p.count() for p in self.space.values())
