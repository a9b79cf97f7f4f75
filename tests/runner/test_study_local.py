"""`pcd study run` on an embedded (local) Ray, SQLite and a local MLflow store."""

from __future__ import annotations

import json
import os

from mlflow.tracking import MlflowClient

from service.study_files import EXPERIMENT, RUNS_EXPERIMENT, LocalMlflowStore, StudyFolder, Tags

from .conftest import cli_env, run_cli

SMALL = "budget.trials=2 budget.max_epochs=2 scheduler.type=none teacher.epochs=2 promotion.seeds=0"
SETS = [arg for item in SMALL.split() for arg in ("--set", item)]


def test_local_study_from_the_command_line(tmp_path) -> None:
    """A study and a `pcd distill` without a tracking server land in one local MLflow store
    (PCD_MLFLOW_LOCAL_DIR): the study's experiment and the single runs' side by side."""
    env = cli_env(tmp_path / "home")
    study_dir = tmp_path / "local"
    args = ["study", "run", "pcd-digits", "--out", str(study_dir), "--num-cpus", "2", *SETS]
    proc = run_cli(args, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "leaderboard" in proc.stdout
    summary = json.loads(StudyFolder(study_dir).summary_file.read_text())
    assert len(summary["trials"]) == 2 and all(t["epochs"] == 2 for t in summary["trials"])
    store = LocalMlflowStore(tmp_path / "home")
    assert store.db.is_file() and not StudyFolder(study_dir).mlflow_db.is_file()
    assert StudyFolder(study_dir).optuna_db.is_file()
    assert (study_dir / "teacher" / "teacher.pt").is_file()
    # how to open it: the command that serves the store's UI, then the ML view's links
    assert f"mlflow ui --backend-store-uri {store.uri} --port 5000" in proc.stdout
    experiment = MlflowClient(store.uri).get_experiment_by_name(EXPERIMENT)
    link = f"http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}"
    assert f"{link}?workflowType=machine_learning" in proc.stdout
    assert f"{link}/runs/{summary['parent_run_id']}?workflowType=machine_learning" in proc.stdout
    again = run_cli(args, env)  # a finished study is not run twice
    assert again.returncode == 1 and "holds a finished study" in again.stderr

    teacher = study_dir / "teacher" / "teacher.pt"
    distill = ["distill", "--teacher", str(teacher), "--student", "mlp_32", "--epochs", "1"]
    proc = run_cli([*distill, "--out", str(tmp_path / "kd"), "--method", "kd", "--quiet"], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(store.uri)
    runs = client.search_runs([client.get_experiment_by_name(RUNS_EXPERIMENT).experiment_id])
    assert [r.data.tags[Tags.RUN_NAME] for r in runs] == ["kd"]
    parent = client.get_run(summary["parent_run_id"])
    assert parent.info.experiment_id == experiment.experiment_id


def test_bad_spec_is_one_line_and_exit_2(tmp_path) -> None:
    proc = run_cli(["study", "run", "pcd-digits", "--set", "budget.trials=0"], dict(os.environ))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "budget.trials" in lines[0] and "Traceback" not in proc.stderr
    proc = run_cli(["study", "run", "no-such-space"], dict(os.environ))
    assert proc.returncode == 2 and "no search space named 'no-such-space'" in proc.stderr
