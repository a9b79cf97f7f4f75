"""Declarative, validated search spaces for distillation studies (YAML + a pydantic schema).

``load_spec("pcd-digits")`` loads a built-in space by name; ``load_spec(Path(...))`` a file.
Overrides (``{"budget.trials": 4}``) are applied before validation.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from search_spaces.errors import describe_validation_error
from search_spaces.schema import StudySpec

SPEC_DIR = Path(__file__).parent

__all__ = ["SPEC_DIR", "SpecError", "StudySpec", "builtin_names", "load_spec", "parse_spec"]


class SpecError(ValueError):
    """A study spec that cannot be used; the message names the file, the field and the rule."""


@lru_cache(maxsize=1)
def _builtin() -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in SPEC_DIR.glob("*.yaml")))


def builtin_names() -> list[str]:
    """Names of the shipped search spaces (fixed for the life of the process)."""
    return list(_builtin())


def _apply_overrides(raw: dict[str, Any], overrides: dict[str, Any], source: str) -> None:
    for dotted, value in overrides.items():
        node = raw
        parts = dotted.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise SpecError(f"{source}: override {dotted!r}: {part!r} is not a section")
            node = child
        node[parts[-1]] = value


def format_validation_error(source: str, err: ValidationError) -> str:
    return f"{source}: {describe_validation_error(err)}"


def parse_spec(
    raw: Any, *, source: str = "<spec>", overrides: dict[str, Any] | None = None
) -> StudySpec:
    """Validate a spec given as data (e.g. a JSON body)."""
    if not isinstance(raw, dict):
        raise SpecError(f"{source}: a study spec must be a mapping, got {type(raw).__name__}")
    raw = dict(raw)
    if overrides:
        _apply_overrides(raw, overrides, source)
    try:
        return StudySpec.model_validate(raw)
    except ValidationError as err:
        raise SpecError(format_validation_error(source, err)) from None


def load_spec(
    path_or_name: str | Path,
    overrides: dict[str, Any] | None = None,
    *,
    source: str | None = None,
) -> StudySpec:
    """Load a spec from a YAML file, or a built-in one by name (``pcd-digits``). Errors name
    ``source`` (default: the file's path)."""
    path = Path(path_or_name)
    if not path.suffix and not path.exists():
        if str(path_or_name) not in builtin_names():
            raise SpecError(
                f"no search space named {str(path_or_name)!r}; "
                f"built-in: {', '.join(builtin_names())}"
            )
        path = SPEC_DIR / f"{path_or_name}.yaml"
    if not path.is_file():
        raise SpecError(f"{path}: file not found")
    raw = _read_yaml(path.resolve(), path.stat().st_mtime_ns)
    return parse_spec(copy.deepcopy(raw), source=source or str(path), overrides=overrides)


@lru_cache(maxsize=64)
def _read_yaml(path: Path, mtime_ns: int) -> Any:
    """Parsed YAML, cached per file version (parsing dominates a validate-only request)."""
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: not valid YAML ({err})") from None
