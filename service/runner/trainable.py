"""The Tune trainable: one trial is one pcd_core training run, reporting every epoch.

Each epoch reports the validation metrics, the objectives at the trial's best epoch so far (what
the searcher is told: service.ranking) and a checkpoint (RunDir.CHECKPOINT_FILES), so a
retried or restored trial resumes mid-run instead of starting over. Test metrics are never
reported to the search.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from ray import tune

from pcd_core.methods import METHODS, needs_teacher
from pcd_core.run_dir import RunDir
from pcd_core.train import DataConfig, EpochMetrics, TrainConfig, train
from search_spaces.schema import TRAINING_PARAMS, StudySpec
from service.ranking import at_best_epoch
from service.study_files import StudyFolder


@dataclass(frozen=True)
class TrialContext:
    """What every trial of a study shares, passed by reference (tune.with_parameters)."""

    spec_json: dict[str, Any]
    teacher: str | None  # teacher artifact path (trained or verified once by the driver)
    teacher_hash: str | None
    data_root: str | None
    logit_bank: str | None
    student_params: int
    study_dir: str  # on shared storage for multi-node clusters

    @property
    def spec(self) -> StudySpec:
        return StudySpec.model_validate(self.spec_json)

    @property
    def objectives(self) -> list[str]:
        """The study's objective metrics, the primary first."""
        spec = self.spec
        return [spec.objective.metric] + (
            [spec.second_objective.metric] if spec.second_objective else []
        )


def trial_config(
    ctx: TrialContext,
    params: dict[str, Any],
    *,
    method: str | None = None,
    seed: int | None = None,
    val_fraction: float | None = None,
) -> TrainConfig:
    """The TrainConfig of a trial: the spec's fixed settings plus the sampled parameters."""
    spec = ctx.spec
    method = method or spec.method
    option_names = set(METHODS[method].options.model_fields)
    distils = needs_teacher(method)
    if seed is None:
        seed = spec.seed if spec.training.seed is None else spec.training.seed
    training = {
        k: v for k, v in {**spec.training.fixed(), **params}.items() if k in TRAINING_PARAMS
    }
    options = (
        {k: v for k, v in params.items() if k in option_names} if method == spec.method else {}
    )
    return TrainConfig(
        data=DataConfig(
            name=spec.data.name,
            root=ctx.data_root,
            val_fraction=spec.data.val_fraction if val_fraction is None else val_fraction,
            seed=spec.data.seed,
            augment=spec.data.augment,
            image_size=spec.data.image_size,
        ),
        arch=spec.student,
        method=method,
        method_options=options,
        teacher=Path(ctx.teacher) if ctx.teacher and distils else None,
        teacher_hash=ctx.teacher_hash,
        epochs=spec.training.epochs or spec.budget.max_epochs,
        seed=seed,
        logit_bank=Path(ctx.logit_bank) if ctx.logit_bank and distils else None,
        **training,
    )


def run_trial(params: dict[str, Any], ctx: TrialContext) -> None:
    """Tune function trainable."""
    cpus = max(1, int(ctx.spec.resources.cpus))
    torch.set_num_threads(cpus)
    config = trial_config(ctx, params)
    out_dir = StudyFolder(Path(ctx.study_dir)).trial_dir(tune.get_context().get_trial_id())
    checkpoint = tune.get_checkpoint()
    resume = False
    if checkpoint is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        with checkpoint.as_directory() as src:
            for name in RunDir.CHECKPOINT_FILES:
                if (Path(src) / name).is_file():
                    shutil.copy2(Path(src) / name, out_dir / name)
        resume = True
    elif out_dir.exists():
        shutil.rmtree(out_dir)  # a restart from scratch: no stale files

    def on_epoch_end(metrics: EpochMetrics, run_dir: Path) -> None:
        report = epoch_report(ctx, metrics, run_dir)
        with tempfile.TemporaryDirectory(prefix="pcd-ckpt-") as tmp:
            for name in RunDir.CHECKPOINT_FILES:
                if (run_dir / name).is_file():
                    shutil.copy2(run_dir / name, Path(tmp) / name)
            tune.report(report, checkpoint=tune.Checkpoint.from_directory(tmp))

    train(config, out_dir, resume=resume, on_epoch_end=on_epoch_end)


def epoch_report(ctx: TrialContext, metrics: EpochMetrics, run_dir: Path) -> dict[str, Any]:
    """What a trial reports to Tune after an epoch: that epoch's metrics, and the study's
    objectives at the trial's best epoch so far (the value the searcher is told)."""
    extra = {"student_params": ctx.student_params}
    report = {**metrics.scalars(), "epoch": metrics.epoch, **extra}
    report = {k: v for k, v in report.items() if v == v}  # drop NaN
    epochs = [{**epoch, **extra} for epoch in _epochs(run_dir)]
    report.update(at_best_epoch(epochs, ctx.objectives, ctx.spec.objective.mode))
    return report


def _epochs(run_dir: Path) -> list[dict[str, Any]]:
    """Every epoch's metrics of the run so far, those before a resume included (the trainer
    appends an epoch's line before it calls on_epoch_end)."""
    return RunDir(run_dir).read_metrics()
