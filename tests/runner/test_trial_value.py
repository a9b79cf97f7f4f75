"""A trial's value as pcd ranks it, the objective at its best epoch, where the driver uses it.

Optuna was told the last epoch's value, so optuna-dashboard and the API could name different
best trials. Here a trial's two epochs go through the trainable's report and the study's
searcher as Tune passes them, without Ray.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import optuna
import pytest

from pcd_core.run_dir import RunDir
from pcd_core.train import EpochMetrics
from search_spaces import load_spec
from service.runner.study import make_searcher
from service.runner.study_plots import best_epoch_per_class
from service.runner.trainable import TrialContext, epoch_report
from service.study_files import StudyFolder


def _epoch(epoch: int, val_loss: float, val_top1: float) -> EpochMetrics:
    return EpochMetrics(
        epoch=epoch,
        lr=0.1,
        losses={"total": val_loss},
        train_top1=val_top1,
        val_top1=val_top1,
        val_top5=100.0,
        val_loss=val_loss,
        val_hard_top1=None,
        val_per_class=[val_top1],
        seconds=1.0,
    )


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"objective": {"metric": "val_loss", "mode": "min"}}, [0.2]),
        ({}, [60.0]),  # val_top1, max
        ({"second_objective": {"metric": "student_params"}}, [60.0, 1234.0]),
    ],
)
def test_optuna_is_told_the_best_epoch(tmp_path, overrides, expected) -> None:
    spec = load_spec("pcd-digits", {"sampler.type": "tpe", **overrides})
    ctx = TrialContext(
        spec_json=spec.model_dump(mode="json"),
        teacher=None,
        teacher_hash=None,
        data_root=None,
        logit_bank=None,
        student_params=1234,
        study_dir=str(tmp_path),
    )
    storage = StudyFolder(tmp_path).optuna_uri
    searcher = make_searcher(spec, storage, "s")
    searcher.suggest("t1")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    # the best epoch (lowest loss, highest accuracy) comes first, the last is worse
    for epoch in (_epoch(1, 0.2, 60.0), _epoch(2, 0.9, 40.0)):
        with RunDir(run_dir).metrics.open("a") as f:  # as the trainer appends it
            f.write(json.dumps(asdict(epoch)) + "\n")
        result = {**epoch_report(ctx, epoch, run_dir), "training_iteration": epoch.epoch}
        searcher.on_trial_result("t1", result)
    searcher.on_trial_complete("t1", result)
    (trial,) = optuna.load_study(study_name="s", storage=storage).trials
    assert trial.values == expected


def test_the_best_trials_per_class_plot_is_of_its_best_epoch_by_the_objective(tmp_path) -> None:
    """It took the epoch of the highest val_top1 whatever the objective."""
    folder = StudyFolder(tmp_path)
    run_dir = folder.trial_dir("t1")
    run_dir.mkdir(parents=True)
    epochs = [_epoch(1, 0.2, 60.0), _epoch(2, 0.9, 70.0)]
    RunDir(run_dir).metrics.write_text("".join(json.dumps(asdict(e)) + "\n" for e in epochs))
    assert best_epoch_per_class(folder, "t1", "val_loss", "min") == [60.0]
    assert best_epoch_per_class(folder, "t1", "val_top1", "max") == [70.0]
    assert best_epoch_per_class(folder, None, "val_loss", "min") == []
