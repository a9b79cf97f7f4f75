"""Training: teacher (CE) and student distillation runs, the training step, checkpoints,
logit bank, metrics."""

from pcd_core.train.checkpoint import CheckpointError, TeacherInfo, content_hash, load_teacher
from pcd_core.train.config import DataConfig, TrainConfig, default_epochs, stored_config
from pcd_core.train.distiller import Distiller
from pcd_core.train.logit_bank import LogitBank
from pcd_core.train.step import EpochTally, NonFiniteLoss, train_epoch, train_step
from pcd_core.train.trainer import (
    EpochMetrics,
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
    "EpochTally",
    "LogitBank",
    "NonFiniteLoss",
    "RunResult",
    "StopRun",
    "TeacherInfo",
    "TrainConfig",
    "content_hash",
    "default_epochs",
    "load_teacher",
    "prefill_logit_bank",
    "stored_config",
    "train",
    "train_epoch",
    "train_step",
]
