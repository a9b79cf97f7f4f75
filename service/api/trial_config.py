"""A trial's configuration from its MLflow params (which MLflow keeps as strings), typed
again: by the study's search space where it names the parameter, else by a careful literal
reading (canonical numbers and Python's True/False/None only; anything else stays text)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from service.study_files import TRIAL_CONTEXT_PARAMS

Scalar = str | int | float | bool | None

_INT = re.compile(r"-?(?:0|[1-9][0-9]*)")
_FLOAT = re.compile(r"-?(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+(?=[eE]))(?:[eE][-+]?[0-9]+)?")
_WORDS: dict[str, Scalar] = {"True": True, "False": False, "None": None}


def typed_config(params: Mapping[str, str], space: Mapping[str, Any]) -> dict[str, Scalar]:
    """``params`` typed; ``space``: the study spec's ``space`` (name -> parameter as JSON)."""
    return {name: typed_value(text, space.get(name)) for name, text in params.items()}


def trial_params(params: Mapping[str, str], space: Mapping[str, Any]) -> dict[str, str]:
    """A trial run's params without the study's context (TRIAL_CONTEXT_PARAMS), which every
    trial run carries: its configuration."""
    return {k: v for k, v in params.items() if k not in TRIAL_CONTEXT_PARAMS or k in space}


def typed_value(text: str, param: Mapping[str, Any] | None) -> Scalar:
    """``text`` as the value ``param`` (a search-space parameter, or None) would have had."""
    kind = param.get("type") if isinstance(param, Mapping) else None
    if kind in ("categorical", "fixed"):
        values = param.get("choices", []) if kind == "categorical" else [param.get("value")]
        for value in values:  # what MLflow wrote for a value is str(value)
            if str(value) == text:
                return value
    if kind == "int" and _INT.fullmatch(text):
        return int(text)
    if kind == "float" and (_FLOAT.fullmatch(text) or _INT.fullmatch(text)):
        return float(text)
    return literal(text)


def literal(text: str) -> Scalar:
    """Numbers and Python's True/False/None as they are written by ``str``; else ``text``."""
    if text in _WORDS:
        return _WORDS[text]
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        value = float(text)
        return value if math.isfinite(value) else text
    return text
