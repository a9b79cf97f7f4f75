"""The reproduction kit's data: for one benchmark (``cifar100.yaml``), the literature's
teacher/student pairs with their family, the default configuration of each method, and the
published numbers with their sources. One validated file per benchmark, one loader.

``load_benchmark("cifar100")`` returns a :class:`Benchmark`; ``study_spec(...)`` turns a
(pair, method) into a fixed-configuration :class:`~search_spaces.schema.StudySpec` (no
search: the configuration is trained over the seeds by the study runner).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pcd_core.methods import MethodOptionError, parse_options
from pcd_core.models import MODELS, model_family
from search_spaces import SpecError, format_validation_error, parse_spec
from search_spaces.schema import StudySpec

DATA_DIR = Path(__file__).parent
METHOD_NAMES = ("ce", "kd", "dkd", "pcd")
MethodName = Literal["ce", "kd", "dkd", "pcd"]
# a published cell: the teacher alone, the student alone (ce), or a distillation method
Column = Literal["teacher", "ce", "kd", "dkd", "pcd"]

__all__ = [
    "METHOD_NAMES",
    "Benchmark",
    "Pair",
    "Published",
    "benchmark_names",
    "load_benchmark",
    "study_spec",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Strict):
    title: str = Field(min_length=1)
    url: str = Field(min_length=1)


class Published(_Strict):
    """A published number: test top-1 (%), best epoch, mean of runs, as its source reports."""

    value: float = Field(ge=0.0, le=100.0)
    source: str = Field(description="a key of the benchmark's sources")
    note: str = ""


class MethodDefaults(_Strict):
    options: dict[str, Any] = Field(default_factory=dict)
    family_stages: dict[Literal["same", "cross"], int] | None = Field(
        None, description="pcd: stages S by pair family"
    )
    source: str = Field(min_length=1)


class Pair(_Strict):
    teacher: str
    student: str
    family: Literal["same", "cross"]
    options: dict[MethodName, dict[str, Any]] = Field(
        default_factory=dict, description="per-pair options over the method defaults"
    )
    options_source: str = ""
    published: dict[Column, Published] = Field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.teacher}-{self.student}"

    @model_validator(mode="after")
    def _models(self) -> Pair:
        for role in ("teacher", "student"):
            name = getattr(self, role)
            if name not in MODELS:
                raise ValueError(f"{role}: unknown model {name!r}; see `pcd models list`")
        same = model_family(self.teacher) == model_family(self.student)
        if (self.family == "same") != same:
            raise ValueError(
                f"{self.id}: family {self.family!r}, but the model families are "
                f"{model_family(self.teacher)!r} and {model_family(self.student)!r}"
            )
        return self


class Benchmark(_Strict):
    benchmark: str
    dataset: str
    epochs: int = Field(ge=1, description="the standard recipe's epoch count")
    sources: dict[str, Source]
    methods: dict[MethodName, MethodDefaults]
    pairs: list[Pair] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Benchmark:
        missing = [m for m in METHOD_NAMES if m not in self.methods]
        if missing:
            raise ValueError(f"methods: no defaults for {', '.join(missing)}")
        ids = [p.id for p in self.pairs]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"pairs: listed twice: {', '.join(dupes)}")
        for pair in self.pairs:
            for column, number in pair.published.items():
                if number.source not in self.sources:
                    raise ValueError(
                        f"pairs.{pair.id}.published.{column}: unknown source "
                        f"{number.source!r}; one of {', '.join(self.sources)}"
                    )
            for method in METHOD_NAMES:
                try:
                    parse_options(method, self.method_options(pair, method))
                except MethodOptionError as err:
                    raise ValueError(f"pairs.{pair.id}.options.{method}: {err}") from None
        return self

    @property
    def pair_ids(self) -> list[str]:
        return [p.id for p in self.pairs]

    def pair(self, pair_id: str) -> Pair:
        for pair in self.pairs:
            if pair.id == pair_id:
                return pair
        raise KeyError(pair_id)

    def method_options(self, pair: Pair, method: str) -> dict[str, Any]:
        """The method's default options for this pair (pcd: S by family)."""
        defaults = self.methods[method]  # type: ignore[index]
        options = {**defaults.options, **pair.options.get(method, {})}  # type: ignore[call-overload]
        if defaults.family_stages and "stages" not in options:
            options["stages"] = defaults.family_stages[pair.family]
        return options


def benchmark_names() -> list[str]:
    return sorted(p.stem for p in DATA_DIR.glob("*.yaml"))


@lru_cache(maxsize=8)
def load_benchmark(name: str = "cifar100") -> Benchmark:
    """The validated reproduction data of a benchmark (``cifar100``)."""
    if name not in benchmark_names():
        raise SpecError(f"no reproduction data for {name!r}; one of {', '.join(benchmark_names())}")
    path = DATA_DIR / f"{name}.yaml"
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: not valid YAML ({err})") from None
    try:
        return Benchmark.model_validate(raw)
    except ValidationError as err:
        raise SpecError(format_validation_error(str(path), err)) from None


def study_spec(
    bench: Benchmark,
    pair: Pair,
    method: str,
    *,
    epochs: int,
    seeds: int,
    teacher_checkpoint: str,
    teacher_hash: str | None,
    data_root: str = ".",
    cpus: float = 1.0,
    gpus: float = 0.0,
) -> StudySpec:
    """A fixed-configuration study of (pair, method): no search, ``seeds`` runs of the method's
    default configuration on the whole training split, test evaluated every epoch."""
    options = bench.method_options(pair, method)
    raw = {
        "name": f"repro-{pair.id}-{method}",
        "description": f"{bench.benchmark} reproduction: {pair.teacher} -> {pair.student}, "
        f"{method} at its published defaults",
        "data": {"name": bench.dataset, "root": data_root, "val_fraction": 0.1, "seed": 0},
        "teacher": {"checkpoint": teacher_checkpoint, "hash": teacher_hash},
        "student": pair.student,
        "method": method,
        "training": {"batch_size": 64},
        "space": {k: {"type": "fixed", "value": v} for k, v in options.items()},
        "budget": {"trials": 0, "max_epochs": epochs},
        "scheduler": {"type": "none"},
        "resources": {"cpus": cpus, "gpus": gpus},
        "promotion": {"seeds": seeds, "baselines": [], "test_each_epoch": True},
    }
    return parse_spec(raw, source=f"reproduce {bench.benchmark} {pair.id} {method}")
