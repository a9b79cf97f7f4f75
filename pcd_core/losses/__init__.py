"""Distillation losses: PCD (the paper's method and the released variant), KD, DKD, LS."""

from pcd_core.losses.kd import dkd_loss, dkd_parts, kd_loss
from pcd_core.losses.pcd import (
    RANKINGS,
    SPLITS,
    WEIGHTINGS,
    Ranking,
    Split,
    Weighting,
    group_sizes,
    pcd_loss,
    released_pcd_loss,
)
from pcd_core.losses.schedules import DIRECTIONS, Direction, JointSchedule, PhasedSchedule
from pcd_core.losses.standardize import standardize_logits

__all__ = [
    "DIRECTIONS",
    "RANKINGS",
    "SPLITS",
    "WEIGHTINGS",
    "Direction",
    "JointSchedule",
    "PhasedSchedule",
    "Ranking",
    "Split",
    "Weighting",
    "dkd_loss",
    "dkd_parts",
    "group_sizes",
    "kd_loss",
    "pcd_loss",
    "released_pcd_loss",
    "standardize_logits",
]
