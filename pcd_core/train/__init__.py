"""Training: teacher (CE) and student distillation runs, checkpoints, logit bank, metrics."""

from pcd_core.train.checkpoint import CheckpointError, TeacherInfo, content_hash, load_teacher
from pcd_core.train.config import DataConfig, TrainConfig
from pcd_core.train.distiller import Distiller
from pcd_core.train.logit_bank import LogitBank
from pcd_core.train.trainer import (
    EpochMetrics,
    NonFiniteLoss,
    RunResult,
    StopRun,
    prefill_logit_bank,
    train,
)

__all__ = [
    "CheckpointError",
    "DataConfig",
    "Distiller",
    "EpochMetrics",
    "LogitBank",
    "NonFiniteLoss",
    "RunResult",
    "StopRun",
    "TeacherInfo",
    "TrainConfig",
    "content_hash",
    "load_teacher",
    "prefill_logit_bank",
    "train",
]
