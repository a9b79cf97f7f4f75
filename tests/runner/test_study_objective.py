"""A val_loss (minimise) study, end to end on a local Ray: the lowest loss is ranked first and
promoted, and the summary, the API, Optuna (what optuna-dashboard reads) and the MLflow parent
run all name the same best trial, with the same value (its best epoch's)."""

from __future__ import annotations

import os

import optuna
from mlflow.tracking import MlflowClient

from service.api.read_model import trials as api_trials
from service.settings import Settings
from service.store import StudyRecord
from service.study_files import EXPERIMENT, StudyFolder, Tags, child_runs_filter

from .conftest import run_cli

SETS = {
    "method": "ce",  # no teacher: the quickest study that searches
    # at momentum 0.99, lr 0.05 has its lowest loss at epoch 1, not at the last (3)
    "space": "{lr: {type: categorical, choices: [0.02, 0.05, 0.1]}}",
    "training.momentum": "0.99",
    "sampler.type": "grid",
    "objective": "{metric: val_loss, mode: min}",
    "budget.trials": "3",
    "budget.max_epochs": "3",
    "scheduler.type": "none",
    "concurrency": "3",
    "promotion.seeds": "1",
    "promotion.baselines": "[]",
}


def _run_study(folder: StudyFolder) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "PCD_"))}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env["PCD_MLFLOW_LOCAL_DIR"] = str(folder.path)  # the local MLflow store in the folder
    sets = [arg for key, value in SETS.items() for arg in ("--set", f"{key}={value}")]
    args = ["study", "run", "pcd-digits", "--out", str(folder.path), *sets]
    proc = run_cli([*args, "--num-cpus", "3", "--quiet"], env)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_a_val_loss_study_names_one_best_trial_everywhere(tmp_path) -> None:
    folder = StudyFolder(tmp_path / "val-loss")
    _run_study(folder)
    summary, state = folder.read_summary(), folder.read_state()
    assert summary is not None and state is not None and len(summary.trials) == 3

    # each trial's value is its lowest loss over its epochs, as MLflow logged them
    client = MlflowClient(folder.mlflow_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT).experiment_id
    runs = client.search_runs([experiment], child_runs_filter(summary.parent_run_id))
    logged = {
        r.data.tags[Tags.TRIAL_ID]: [
            m.value for m in client.get_metric_history(r.info.run_id, "val_loss")
        ]
        for r in runs
    }
    assert {t.trial_id: t.best for t in summary.trials} == {t: min(v) for t, v in logged.items()}
    # (a trial whose last epoch is not its best, so that last and best tell apart here)
    assert any(v[-1] > min(v) for v in logged.values()), logged
    lowest = min(summary.trials, key=lambda t: t.best)
    assert (summary.best_trial_id, summary.best_value) == (lowest.trial_id, lowest.best)
    assert summary.best_config == lowest.config and "best" in summary.promotion  # promoted

    # the API lists it first
    record = StudyRecord(
        id="s", name="s", status="succeeded", spec=state.spec, study_dir=str(folder.path)
    )
    listed = api_trials(Settings(database_url=f"sqlite:///{tmp_path / 'store.db'}"), record)
    assert listed[0].trial_id == lowest.trial_id
    assert [t.best for t in listed] == sorted(t.best for t in summary.trials)

    # Optuna was told every trial's best epoch, and so names the same best configuration
    (name,) = optuna.get_all_study_names(folder.optuna_uri)
    study = optuna.load_study(study_name=name, storage=folder.optuna_uri)
    told = {t.params["lr"]: t.value for t in study.trials}
    assert told == {t.config["lr"]: t.best for t in summary.trials}
    assert study.best_trial.params["lr"] == lowest.config["lr"]

    # the MLflow parent run names it too
    parent = client.get_run(summary.parent_run_id).data
    assert parent.tags[Tags.BEST_TRIAL_ID] == lowest.trial_id
    assert parent.metrics["best_val_loss"] == lowest.best
