"""PCD's two readings of the stage schedule, as objects that give ``group_counts`` per epoch."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Literal, get_args

Direction = Literal["both", "f2c", "c2f"]  # the allowed values, here only
DIRECTIONS: tuple[str, ...] = get_args(Direction)


def _check(stages: int, directions: str) -> None:
    if not isinstance(stages, int) or isinstance(stages, bool) or stages < 1:
        raise ValueError(f"stages must be a positive integer, got {stages!r}")
    if directions not in DIRECTIONS:
        raise ValueError(f"directions must be one of {', '.join(DIRECTIONS)}; got {directions!r}")


def fine_to_coarse(stages: int) -> list[int]:
    """F2C visits k = S, S-1, ..., 1 groups."""
    return list(range(stages, 0, -1))


def coarse_to_fine(stages: int) -> list[int]:
    """C2F visits k = 1, 2, ..., S groups."""
    return list(range(1, stages + 1))


@cache
def stage_passes(stages: int, directions: Direction) -> tuple[int, ...]:
    """The k of every stage of the selected passes, in order (``both``: F2C then C2F).

    Built once per (S, directions): the schedules read it every training step.
    """
    if directions == "f2c":
        return tuple(fine_to_coarse(stages))
    if directions == "c2f":
        return tuple(coarse_to_fine(stages))
    return tuple(fine_to_coarse(stages) + coarse_to_fine(stages))


@dataclass(frozen=True)
class JointSchedule:
    """Every step uses every stage of the selected passes.

    ``both`` is F2C followed by C2F; both passes hold the same stages, so the loss computes
    each stage once with weight 2 (pcd_loss merges repeated k).
    """

    stages: int
    directions: Direction = "both"

    def __post_init__(self) -> None:
        _check(self.stages, self.directions)

    def group_counts(self, epoch: int) -> list[int]:
        """The stage list for ``epoch`` (the same for every epoch)."""
        return list(stage_passes(self.stages, self.directions))


@dataclass(frozen=True)
class PhasedSchedule:
    """The curriculum reading: training is cut into consecutive phases of one stage each.

    ``both``: 2S phases, k = S, ..., 1 then k = 1, ..., S; ``f2c`` / ``c2f``: S phases, one
    pass stretched over the whole training. Epochs count from 1; epoch e belongs to phase
    ``floor((e - 1) * P / epochs)``, so phase lengths differ by at most one epoch when P does
    not divide the epoch count (and a phase can be empty when epochs < P).
    """

    stages: int
    epochs: int
    directions: Direction = "both"

    def __post_init__(self) -> None:
        _check(self.stages, self.directions)
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs must be a positive integer, got {self.epochs!r}")

    @property
    def phases(self) -> list[int]:
        """The k of each phase, in order."""
        return list(stage_passes(self.stages, self.directions))

    def phase_index(self, epoch: int) -> int:
        if epoch < 1:
            raise ValueError(f"epochs count from 1, got {epoch}")
        phases = len(stage_passes(self.stages, self.directions))
        return min((epoch - 1) * phases // self.epochs, phases - 1)

    def group_counts(self, epoch: int) -> list[int]:
        """The single stage active in ``epoch``."""
        return [stage_passes(self.stages, self.directions)[self.phase_index(epoch)]]
