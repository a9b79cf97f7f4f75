"""Validation errors as "field.path: message" (never a model's class name)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from pcd_core.methods import METHODS
from search_spaces.schema import TRAINING_PARAMS


def _misplaced_key_hint(name: str) -> str:
    """What to write instead of a top-level key that is a method or training option."""
    if any(name in spec.options.model_fields for spec in METHODS.values()):
        return f"; method options live under space. (did you mean space.{name}?)"
    if name in TRAINING_PARAMS:
        return f"; did you mean training.{name} (fixed) or space.{name} (searched)?"
    return ""


def _message(e: Any) -> str:
    msg = e["msg"].removeprefix("Value error, ")
    if e["type"] == "extra_forbidden" and len(e["loc"]) == 1:
        msg += _misplaced_key_hint(str(e["loc"][0]))
    return msg


def describe_validation_error(err: ValidationError) -> str:
    """Each error of ``err`` as ``field.path: message``, joined by "; "."""
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"] if not str(x).startswith("function-after"))
        msg = _message(e)
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts) or "invalid"
