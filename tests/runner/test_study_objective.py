"""A val_loss (minimise) study, end to end on a local Ray: the lowest loss is ranked first and
promoted, and the summary, the API, Optuna (what optuna-dashboard reads) and the MLflow parent
run all name the same best trial, with the same value (its best epoch's)."""

from __future__ import annotations

import json
import re

import optuna
from mlflow.tracking import MlflowClient

from service.api.read_model import trials as api_trials
from service.settings import Settings
from service.store import StudyRecord
from service.study_files import (
    EXPERIMENT,
    RunKind,
    StudyFolder,
    Tags,
    child_runs_filter,
    study_runs_filter,
)

from .conftest import cli_env, run_cli

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
    env = cli_env(folder.path)  # the local MLflow store in the folder
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
    assert all(set(t.config) == {"lr"} for t in listed)  # not the runs' context params

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
    assert parent.params[f"{Tags.BEST_PARAM_PREFIX}lr"] == str(lowest.config["lr"])
    plots = {a.path for a in client.list_artifacts(summary.parent_run_id, "plots")}
    assert {"plots/optuna_history_val_loss.png", "plots/best_trial_per_class.png"} <= plots
    _trial_runs_read_in_the_ui(client, experiment, summary, logged, folder)

    # its promotion is a child run of the parent beside the trials (which the API counts),
    # with the best configuration, and the parent's summary is that run's test_top1
    (promoted,) = client.search_runs(
        [experiment], study_runs_filter(summary.parent_run_id, RunKind.promotion)
    )
    assert promoted.info.run_name == "promoted seed 0"
    assert json.loads(promoted.data.params["config"]) == lowest.config
    top1 = promoted.data.metrics["test_top1"]
    assert summary.promotion["best"]["test_top1"] == [top1]
    assert parent.metrics["promoted_test_top1_mean"] == top1 and len(runs) == 3


def _trial_runs_read_in_the_ui(client, experiment, summary, logged, folder) -> None:
    """Each trial's run: a readable name, the study's context, its value at its best epoch,
    how it ended, its files; the winner tagged and first when sorted by its value."""
    runs = client.search_runs(
        [experiment], child_runs_filter(summary.parent_run_id), order_by=["metrics.best_val_loss"]
    )
    assert runs[0].data.tags[Tags.TRIAL_ID] == summary.best_trial_id  # the UI's sort finds it
    assert [r.data.tags[Tags.TRIAL_ID] for r in runs if r.data.tags.get(Tags.BEST)] == [
        summary.best_trial_id
    ]
    names = {r.info.run_name for r in runs}
    assert len(names) == 3 and all(re.fullmatch(r"t\d lr=0\.\d+", n) for n in names), names
    context = {"method": "ce", "teacher": "none", "student": "mlp_32", "dataset": "digits"}
    context |= {"max_epochs": "3", "study": "pcd-digits", "study_id": folder.path.name}
    for row in summary.trials:
        run = next(r for r in runs if r.data.tags[Tags.TRIAL_ID] == row.trial_id)
        assert run.data.params == {**context, "lr": str(row.config["lr"])}
        epoch = logged[row.trial_id].index(row.best) + 1
        assert run.data.metrics["best_val_loss"] == row.best
        assert run.data.metrics["best_epoch"] == epoch
        assert run.data.tags[Tags.NOTE].startswith(f"Completed 3 of 3 epochs. Best epoch {epoch}:")
    files = {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    files |= {a.path for a in client.list_artifacts(runs[0].info.run_id, "plots")}
    files |= {a.path for a in client.list_artifacts(runs[0].info.run_id, "checkpoints")}
    assert {"metrics.jsonl", "plots/curves.png", "checkpoints/best.pt"} <= files
