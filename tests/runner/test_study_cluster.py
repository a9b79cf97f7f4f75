"""Studies on a real two-node Ray cluster, real MLflow (SQL store), Optuna on the real Postgres.

Each study runs as `pcd study run` in its own process, as the service runs it.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import uuid
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from service.study_files import EXPERIMENT, StudyFolder, Tags, mlflow_store_uri, sqlite_uri

from .conftest import VENV_BIN, run_cli, wait_for

pytestmark = pytest.mark.heavy  # two-node studies; the fault suite covers the cluster in make test

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _runs(tracking_uri: str):
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if Tags.PARENT_RUN not in r.data.tags]
    children = [r for r in runs if Tags.TRIAL_ID in r.data.tags]  # trials (not promotion)
    return client, parents, children


def _study_args(
    study_dir: Path, tracking: str, storage: str, trials: int, epochs: int
) -> list[str]:
    return [
        "study",
        "run",
        "pcd-digits",
        "--quiet",
        "--out",
        str(study_dir),
        "--tracking-uri",
        tracking,
        "--optuna-storage",
        storage,
        "--set",
        f"budget.trials={trials}",
        "--set",
        f"budget.max_epochs={epochs}",
        "--set",
        "scheduler.grace_period=1",
        "--set",
        "teacher.epochs=3",
        "--set",
        "promotion.seeds=1",
        "--set",
        "promotion.baselines=[]",
    ]


@pytest.fixture
def postgres_study_name():
    names: list[str] = []
    yield names
    for name in names:
        try:
            optuna.delete_study(study_name=name, storage=POSTGRES)
        except KeyError:
            pass


def test_six_trial_study_on_two_nodes(ray_cluster, tmp_path, postgres_study_name) -> None:
    study_dir = tmp_path / f"s{uuid.uuid4().hex[:8]}"
    tracking = mlflow_store_uri(tmp_path)
    postgres_study_name.append(f"pcd-digits-{study_dir.name}")
    env = {**ray_cluster["env"], "PCD_RAY_ADDRESS": ray_cluster["address"]}
    proc = run_cli(_study_args(study_dir, tracking, POSTGRES, trials=6, epochs=4), env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "leaderboard" in proc.stdout and "best val_top1" in proc.stdout

    summary = json.loads(StudyFolder(study_dir).summary_file.read_text())
    assert len(summary["trials"]) == 6
    assert summary["best_value"] > 50 and summary["best_config"]["warmup"] == 2
    assert {t["node_ip"] for t in summary["trials"]} == {"127.0.0.2", "127.0.0.3"}
    assert summary["promotion"]["best"]["seeds"] == 1

    client, parents, children = _runs(tracking)
    assert len(parents) == 1 and len(children) == 6
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert "best_val_top1" in parent.data.metrics
    assert {c.data.tags[Tags.PARENT_RUN] for c in children} == {parent.info.run_id}
    # each trial's run names the node that ran it, as the summary does
    by_trial = {t["trial_id"]: t["node_ip"] for t in summary["trials"]}
    assert {c.data.tags[Tags.TRIAL_ID]: c.data.tags[Tags.NODE_IP] for c in children} == by_trial
    outcomes = set()
    for child in children:
        epochs = int(child.data.tags[Tags.EPOCHS])
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val_top1")]
        assert steps == list(range(1, epochs + 1))  # one value per epoch, none twice
        assert child.info.status == "FINISHED"
        outcomes.add(child.data.tags[Tags.OUTCOME])
        stopped = child.data.tags[Tags.OUTCOME] == "stopped_early"
        assert child.info.run_name.endswith(f" (stopped@{epochs})") == stopped
        assert child.data.tags[Tags.NOTE].startswith("Stopped early by ASHA") == stopped
    assert outcomes <= {"completed", "stopped_early"} and "completed" in outcomes
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert {"plots/optuna_history_val_top1.png", "plots/best_trial_per_class.png"} <= plots

    study = optuna.load_study(study_name=postgres_study_name[0], storage=POSTGRES)
    states = [t.state for t in study.trials]
    assert len(states) == 6 and all(s == optuna.trial.TrialState.COMPLETE for s in states)


def test_driver_killed_then_restored(ray_cluster, tmp_path) -> None:
    study_dir = tmp_path / "killed"
    tracking = mlflow_store_uri(tmp_path)
    storage = sqlite_uri(tmp_path / "search.db")  # shared by the driver's attempts
    env = {**ray_cluster["env"], "PCD_RAY_ADDRESS": ray_cluster["address"]}
    args = _study_args(study_dir, tracking, storage, trials=6, epochs=6)
    log = (tmp_path / "driver-output.log").open("w")
    driver = subprocess.Popen(
        [str(VENV_BIN / "pcd"), *args],
        env=env,
        start_new_session=True,
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    db = Path(tracking.removeprefix("sqlite:///"))

    def finished_trials() -> int:
        # read-only SQL: an MLflow client here would run schema checks against the driver's db
        if not db.exists():
            return 0
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
                return conn.execute(
                    "select count(*) from runs join tags on tags.run_uuid = runs.run_uuid "
                    f"where tags.key = '{Tags.TRIAL_ID}' and runs.status = 'FINISHED'"
                ).fetchone()[0]
        except sqlite3.Error:  # tables not created yet, or busy
            return 0

    try:
        finished = wait_for(lambda: finished_trials() >= 2, timeout=240)
        assert finished, (tmp_path / "driver-output.log").read_text()[-3000:]
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    _, _, before = _runs(tracking)
    finished_before = {
        c.data.tags[Tags.TRIAL_ID]: c.info.run_id for c in before if c.info.status == "FINISHED"
    }
    assert len(finished_before) >= 2

    proc = run_cli(args, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = json.loads(StudyFolder(study_dir).state_file.read_text())
    assert state["restored"] == 1
    summary = json.loads(StudyFolder(study_dir).summary_file.read_text())
    assert len(summary["trials"]) == 6

    client, parents, children = _runs(tracking)
    assert len(parents) == 1
    trial_ids = [c.data.tags[Tags.TRIAL_ID] for c in children]
    assert len(trial_ids) == len(set(trial_ids))  # no trial has two runs
    assert {t["trial_id"] for t in summary["trials"]} <= set(trial_ids)
    extra = set(trial_ids) - {t["trial_id"] for t in summary["trials"]}
    # the only runs beyond the study's trials: finished before the crash, kept and tagged
    assert all(
        Tags.RESTORE_NOTE in c.data.tags for c in children if c.data.tags[Tags.TRIAL_ID] in extra
    ), (extra, summary["trials"], [(c.data.tags, c.info.status) for c in children])
    after = {c.data.tags[Tags.TRIAL_ID]: c for c in children}
    for trial_id, run_id in finished_before.items():  # finished work is kept, not redone
        assert after[trial_id].info.run_id == run_id and after[trial_id].info.status == "FINISHED"
    assert all(c.info.status == "FINISHED" for c in children), [
        (c.data.tags[Tags.TRIAL_ID], c.info.status, c.data.tags.get(Tags.OUTCOME)) for c in children
    ] + [(t["trial_id"], t["status"], t["epochs"]) for t in summary["trials"]]
    for child in children:
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val_top1")]
        assert steps == sorted(set(steps)), "an epoch logged twice"

    optuna_study = optuna.load_study(study_name=f"pcd-digits-{study_dir.name}", storage=storage)
    states = [t.state for t in optuna_study.trials]
    assert optuna.trial.TrialState.RUNNING not in states
    assert states.count(optuna.trial.TrialState.COMPLETE) >= 6
