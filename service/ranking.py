"""What a trial is worth and which is best, by the study's objective and its direction.

One definition, used by the driver (Tune, Optuna, MLflow, the summary and its plots), the API
and the command line alike: **a trial's value is its objective at its best epoch** (the
highest value for ``mode="max"``, the lowest for ``"min"``; the first such epoch on a tie).
The other objectives of a multi-objective study are taken at that same epoch.

Importing this module is cheap (no Ray, MLflow or torch).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, TypeVar

Mode = Literal["max", "min"]
T = TypeVar("T")


def better(a: float, b: float, mode: Mode) -> bool:
    """Whether ``a`` is strictly better than ``b``."""
    return a > b if mode == "max" else a < b


def _usable(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


def best_index(values: Sequence[float | None], mode: Mode) -> int | None:
    """The index of the best value (the first of equal ones); None when there is none."""
    best: int | None = None
    for i, value in enumerate(values):
        if _usable(value) and (best is None or better(value, values[best], mode)):  # type: ignore[arg-type]
            best = i
    return best


def best_value(values: Sequence[float | None], mode: Mode) -> float | None:
    """A trial's value from its per-epoch history of the objective."""
    i = best_index(values, mode)
    return None if i is None else values[i]


def running_best(values: Sequence[float], mode: Mode) -> list[float]:
    """The best value so far after each one (a "best so far" curve)."""
    out: list[float] = []
    for value in values:
        out.append(value if not out or better(value, out[-1], mode) else out[-1])
    return out


def ranked(items: Iterable[T], value: Callable[[T], float | None], mode: Mode) -> list[T]:
    """``items`` best first by ``value``; those without a value last, in their order."""
    items = list(items)
    scored = [x for x in items if _usable(value(x))]
    unscored = [x for x in items if not _usable(value(x))]
    sign = -1.0 if mode == "max" else 1.0
    return sorted(scored, key=lambda x: sign * value(x)) + unscored  # type: ignore[operator]


def at_best_epoch_key(metric: str) -> str:
    """The result key under which a trial reports ``metric`` at its best epoch so far: the
    metric Tune's searcher (Optuna) is given, so that it is told the trial's value."""
    return f"{metric}_at_best_epoch"


def at_best_epoch(
    history: Sequence[Mapping[str, Any]], metrics: Sequence[str], mode: Mode
) -> dict[str, float]:
    """``metrics`` at the best epoch of ``history`` (one mapping per epoch) by the first of
    them, under their ``at_best_epoch_key`` names; empty when no epoch has the first."""
    i = best_index([epoch.get(metrics[0]) for epoch in history], mode)
    if i is None:
        return {}
    best = history[i]
    return {at_best_epoch_key(m): float(best[m]) for m in metrics if _usable(best.get(m))}
