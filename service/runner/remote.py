"""Fixed-configuration training on a Ray worker: the study's teacher, its promotion's seed
runs and reproductions. Each resumes from its run folder (a restarted driver asks again)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ray

from pcd_core.train import TrainConfig, train
from search_spaces.schema import StudySpec


@ray.remote
def train_remote(config_json: dict[str, Any], out_dir: str) -> dict[str, Any]:
    """One fixed-configuration training run on a Ray worker; resumes from its folder."""
    import torch

    torch.set_num_threads(1)
    result = train(TrainConfig.model_validate(config_json), Path(out_dir), resume=True)
    return {
        "test": result.test,
        "teacher_artifact": str(result.teacher_artifact) if result.teacher_artifact else None,
        "teacher_hash": result.teacher_hash,
        "best_val_top1": result.best_val_top1,
        "best_epoch": result.best_epoch,
        "hard_classes": result.hard_classes,
    }


def remote_opts(spec: StudySpec) -> dict[str, Any]:
    """The Ray resources of one of the study's runs."""
    return {"num_cpus": spec.resources.cpus, "num_gpus": spec.resources.gpus}
