"""A trial's MLflow run as the UI shows it: its name, context params, best values, description
and files; and the study's Optuna plots. The callback runs against a real MLflow store
(SQLite) with Tune's own Trial objects, without Ray."""

from __future__ import annotations

import dataclasses
import json
import pickle

import optuna
from mlflow.tracking import MlflowClient
from ray.tune.experiment import Trial

from pcd_core.run_dir import RunDir
from search_spaces import load_spec
from service.runner.mlflow_callback import MLflowStudyCallback
from service.runner.study_plots import optuna_plots, trial_curves
from service.runner.trial_runs import (
    MAX_NAME,
    TrialRunInfo,
    final_name,
    mark_best,
    run_name,
    short_keys,
)
from service.study_files import Tags, TrialRow, child_runs_filter, mlflow_store_uri

CONFIG = {"stages": 3, "temperature": 4.123456, "alpha": 0.5, "schedule": "joint", "warmup": 2}


def _info(tmp_path, **overrides) -> TrialRunInfo:
    spec = load_spec("pcd-digits", {"budget.trials": 12, "budget.max_epochs": 3, **overrides})
    return TrialRunInfo.from_spec(spec, tmp_path / "study-1", checkpoint_max_mb=50)


def test_run_names_are_short_readable_and_unique(tmp_path) -> None:
    info = _info(tmp_path)
    name = run_name(3, "abc", CONFIG, info)
    assert name == "t03 stages=3 temperature=4.12 alpha=0.5 schedule=joint"  # fixed: not shown
    names = {run_name(i, "abc", CONFIG, info) for i in range(1, 13)}
    assert len(names) == 12  # the ordinal keeps equal configurations apart
    long = {**CONFIG, "schedule": "phased-with-a-long-name", "alpha": 0.000123456}
    short = run_name(11, "abc", long, info)
    assert short.startswith("t11 st=3 t=4.12 a=0.000123 sc=phased") and len(short) <= MAX_NAME
    assert run_name(None, "abc_00001", CONFIG, info).startswith("t-abc_00001 st")
    assert short_keys(("stages", "schedule", "temperature")) == {
        "stages": "st",
        "schedule": "sc",
        "temperature": "t",
    }
    assert final_name(name, "stopped_early", 2) == f"{name} (stopped@2)"
    assert final_name(name, "completed", 3) == name


def _trial_files(info: TrialRunInfo, trial_id: str, top1: list[float]) -> None:
    run = RunDir(info.trial_dir(trial_id)).create()
    rows = [
        {"epoch": e, "val_top1": v, "train_top1": v, "val_loss": 1 / v, "losses": {"total": 1.0}}
        for e, v in enumerate(top1, 1)
    ]
    run.metrics.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run.best.write_bytes(b"\0" * 1000)


def _run_trial(cb: MLflowStudyCallback, trial: Trial, top1: list[float], restore: bool) -> None:
    cb.on_trial_start(0, [trial], trial)
    for epoch, value in enumerate(top1, 1):
        result = {
            "epoch": epoch,
            "val_top1": value,
            "val_top1_at_best_epoch": max(top1[:epoch]),
            "student_params_at_best_epoch": 1234.0,  # the second objective
            "timestamp": 1_700_000_000 + epoch,
        }
        cb.on_trial_result(0, [trial], trial, result)
    if restore:  # the driver died; Tune restores the callback from its pickled experiment
        cb = pickle.loads(pickle.dumps(cb))
        cb.on_trial_restore(0, [trial], trial)
    cb.on_trial_complete(0, [trial], trial)


def test_a_trial_run_says_how_it_ended_and_carries_its_files(tmp_path) -> None:
    uri = mlflow_store_uri(tmp_path)
    client = MlflowClient(uri)
    experiment = client.create_experiment("e", artifact_location=(tmp_path / "art").as_uri())
    parent = client.create_run(experiment).info.run_id
    info = _info(tmp_path, second_objective={"metric": "student_params"})
    stopped = Trial("f", config=CONFIG, trial_id="a_00001", experiment_tag="1_x", stub=True)
    _trial_files(info, stopped.trial_id, [50.0, 40.0])
    _run_trial(MLflowStudyCallback(uri, experiment, parent, info), stopped, [50.0, 40.0], True)
    done = Trial(
        "f", config={**CONFIG, "stages": 1}, trial_id="a_00002", experiment_tag="2_y", stub=True
    )
    _trial_files(info, done.trial_id, [30.0, 60.0, 55.0])
    no_checkpoints = dataclasses.replace(info, checkpoint_max_mb=0)
    cb = MLflowStudyCallback(uri, experiment, parent, no_checkpoints)
    _run_trial(cb, done, [30.0, 60.0, 55.0], False)

    runs = {
        r.data.tags[Tags.TRIAL_ID]: r
        for r in client.search_runs([experiment], child_runs_filter(parent))
    }
    assert len(runs) == 2  # the restore found its run again
    first, second = runs["a_00001"], runs["a_00002"]
    assert (
        first.info.run_name == "t01 stages=3 temperature=4.12 alpha=0.5 schedule=joint (stopped@2)"
    )
    assert first.data.tags[Tags.NOTE].startswith("Stopped early by ASHA at epoch 2 of 3.")
    assert first.data.tags[Tags.OUTCOME] == "stopped_early" and first.info.status == "FINISHED"
    assert (first.data.metrics["best_val_top1"], first.data.metrics["best_epoch"]) == (50.0, 1.0)
    assert first.data.metrics["best_student_params"] == 1234.0
    assert second.info.run_name == "t02 stages=1 temperature=4.12 alpha=0.5 schedule=joint"
    assert second.data.tags[Tags.NOTE] == (
        "Completed 3 of 3 epochs. Best epoch 2: val_top1 60, student_params 1234."
    )
    assert (second.data.metrics["best_val_top1"], second.data.metrics["best_epoch"]) == (60.0, 2.0)
    context = {"method": "pcd", "teacher": "cnn_small", "student": "mlp_32", "dataset": "digits"}
    context |= {"max_epochs": "3", "study": "pcd-digits", "study_id": "study-1"}
    assert first.data.params == {**context, **{k: str(v) for k, v in CONFIG.items()}}
    assert first.data.tags[Tags.USER] and first.data.tags[Tags.SOURCE_NAME] == "pcd study"

    def artifacts(run_id: str) -> set[str]:
        top = client.list_artifacts(run_id)
        return {
            a.path
            for d in top
            for a in (client.list_artifacts(run_id, d.path) if d.is_dir else [d])
        }

    assert artifacts(first.info.run_id) == {
        "metrics.jsonl",
        "plots/curves.png",
        "checkpoints/best.pt",
    }
    assert artifacts(second.info.run_id) == {"metrics.jsonl", "plots/curves.png"}  # over 0 MB

    # the winner: its run alone tagged, and its configuration on the parent as params
    mark_best(client, experiment, parent, _row("a_00002", {"stages": 1}))
    mark_best(client, experiment, parent, _row("a_00002", {"stages": 1}))  # a restore: again
    tagged = client.search_runs([experiment], f"tags.`{Tags.BEST}` = 'true'")
    assert [r.data.tags[Tags.TRIAL_ID] for r in tagged] == ["a_00002"]
    assert client.get_run(parent).data.params == {"best.stages": "1"}


def _row(trial_id: str, config: dict) -> TrialRow:
    return TrialRow(trial_id=trial_id, status="TERMINATED", epochs=3, last=1, best=1, config=config)


def test_optuna_plots_of_a_two_objective_study(tmp_path) -> None:
    study = optuna.create_study(
        directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0)
    )
    study.optimize(
        lambda t: (t.suggest_float("x", 0, 1) + t.suggest_int("n", 1, 4), t.params["n"] * 10.0),
        n_trials=8,
    )
    written = {p.name for p in optuna_plots(study, ["val_top1", "student_params"], tmp_path)}
    for metric in ("val_top1", "student_params"):
        kinds = ("history", "importances", "contour", "slice")
        assert {f"optuna_{kind}_{metric}.png" for kind in kinds} <= written
    assert "optuna_pareto_front.png" in written
    assert all((tmp_path / name).stat().st_size > 0 for name in written)

    # a study too small for some plots still gets the others, and does not fail
    for n_trials in (0, 1):
        small = optuna.create_study(direction="maximize")
        small.optimize(lambda t: t.suggest_float("x", 0, 1) + t.suggest_float("y", 0, 1), n_trials)
        (tmp_path / str(n_trials)).mkdir()
        written = {p.name for p in optuna_plots(small, ["val_top1"], tmp_path / str(n_trials))}
        assert n_trials == 0 or "optuna_history_val_top1.png" in written


def test_trial_curves(tmp_path) -> None:
    rows = [{"epoch": 1, "val_top1": 10.0, "val_loss": 2.0}, {"epoch": 2, "val_top1": 20.0}]
    assert trial_curves(rows, tmp_path / "c.png", "val_top1", "max") == tmp_path / "c.png"
    assert (tmp_path / "c.png").stat().st_size > 0
    assert trial_curves([], tmp_path / "none.png", "val_top1", "max") is None
