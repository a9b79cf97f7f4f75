"""Failures that must not look like success: diverging trials, a study without a completed
trial. `pcd study run` on a local Ray, as in
test_study_local, with its local MLflow store read back."""

from __future__ import annotations

import json
import os
from pathlib import Path

from mlflow.tracking import MlflowClient

from .conftest import run_cli

# cnn_small at lr 10, momentum 0.99 diverges (NaN loss) in its first epoch; at 0.01 it learns
DIVERGE = [
    "--set", "student=cnn_small",
    "--set", "training.momentum=0.99",
    "--set", "sampler.type=grid",
]  # fmt: skip
COMMON = [
    "--set", "teacher.epochs=1",
    "--set", "budget.max_epochs=2",
    "--set", "scheduler.type=none",
    "--set", "promotion.seeds=0",
    "--set", "promotion.baselines=[]",
    "--set", "max_failures=0",
    "--num-cpus", "2",
    "--quiet",
]  # fmt: skip


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "PCD_"))}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    return env


def _run(study_dir: Path, *sets: str):
    args = ["study", "run", "pcd-digits", "--study-dir", str(study_dir), *COMMON, *sets]
    return run_cli(args, _env())


def _runs(study_dir: Path):
    client = MlflowClient(f"sqlite:///{study_dir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("pcd-studies")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children


def test_a_diverging_trial_fails_alone_under_a_val_loss_objective(tmp_path) -> None:
    study_dir = tmp_path / "mixed"
    proc = _run(
        study_dir,
        *DIVERGE,
        "--set", "space={lr: {type: categorical, choices: [0.01, 10.0]}}",
        "--set", "budget.trials=2",
        "--set", "objective={metric: val_loss, mode: min}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((study_dir / "summary.json").read_text())
    by_lr = {t["config"]["lr"]: t for t in summary["trials"]}
    assert by_lr[10.0]["status"] == "ERROR"
    assert by_lr[10.0]["error"].startswith("NonFiniteLoss: loss is nan at epoch 1, step ")
    assert by_lr[0.01]["status"] == "TERMINATED" and by_lr[0.01]["error"] is None
    assert summary["best_trial_id"] == by_lr[0.01]["trial_id"]

    parents, children = _runs(study_dir)
    assert parents[0].info.status == "FINISHED"
    assert parents[0].data.tags["pcd.failed_trials"] == "1"
    errors = json.loads(parents[0].data.tags["pcd.trial_errors"])
    assert errors == {by_lr[10.0]["trial_id"]: by_lr[10.0]["error"]}
    failed = {c.data.tags["pcd.trial_id"]: c for c in children if c.info.status == "FAILED"}
    assert set(failed) == {by_lr[10.0]["trial_id"]}
    run = failed[by_lr[10.0]["trial_id"]]
    assert run.data.tags["pcd.outcome"] == "failed"
    assert run.data.tags["pcd.error"] == by_lr[10.0]["error"]
    assert [c.info.status for c in children].count("RUNNING") == 0


def test_a_study_without_a_completed_trial_fails(tmp_path) -> None:
    study_dir = tmp_path / "all-failed"
    proc = _run(
        study_dir,
        *DIVERGE,
        "--set", "space={lr: {type: categorical, choices: [10.0]}}",
        "--set", "budget.trials=1",
    )  # fmt: skip
    assert proc.returncode == 1
    error = proc.stderr.strip().splitlines()[-1]  # Tune logs the trial's traceback before it
    assert error.startswith("error: no trial completed: 1 of 1 trials failed; trial ")
    assert "NonFiniteLoss: loss is nan at epoch 1" in error
    assert not (study_dir / "summary.json").exists()

    parents, children = _runs(study_dir)
    parent = parents[0]
    assert parent.info.status == "FAILED" and parent.data.tags["pcd.failed_trials"] == "1"
    assert parent.data.tags["pcd.error"].startswith("StudyError: no trial completed")
    assert [c.info.status for c in children] == ["FAILED"]
    assert children[0].data.tags["pcd.error"].startswith("NonFiniteLoss: loss is nan")
