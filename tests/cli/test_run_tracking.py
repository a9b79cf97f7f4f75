"""`pcd teacher train` and `pcd distill` recorded in MLflow: one run each in the experiment
``pcd-runs`` of the local store (PCD_MLFLOW_LOCAL_DIR) with the config as params, the epoch
and test metrics, the run folder's files as artifacts; FAILED with the reason when the run
fails; nothing with --no-track. Digits, tiny models, 2 epochs."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner, Result

from service.cli import app
from service.study_files import RUNS_EXPERIMENT, LocalMlflowStore, Tags

runner = CliRunner()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pcd-home")


@pytest.fixture(autouse=True)
def _local_store(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PCD_MLFLOW_LOCAL_DIR", str(home / "store"))
    monkeypatch.delenv("PCD_MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("PCD_MLFLOW_PUBLIC_URL", raising=False)


def invoke(*args: object) -> Result:
    return runner.invoke(app, [str(a) for a in args])


def _runs(home: Path, name: str | None = None) -> list:
    client = MlflowClient(LocalMlflowStore(home / "store").uri)
    experiment = client.get_experiment_by_name(RUNS_EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    return [r for r in runs if name is None or r.data.tags[Tags.RUN_NAME] == name]


@pytest.fixture(scope="module")
def teacher(home: Path) -> Path:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PCD_MLFLOW_LOCAL_DIR", str(home / "store"))
        out = home / "teacher"
        result = invoke("teacher", "train", "--arch", "mlp_64", "--epochs", 2, "--out", out, "-q")
    assert result.exit_code == 0, result.output
    return out / "teacher.pt"


def test_teacher_and_distill_runs_are_recorded(teacher: Path, home: Path) -> None:
    (run,) = _runs(home, "teacher")
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlflow.source.name"] == "pcd teacher train"
    assert run.data.tags["pcd.teacher_hash"]

    out = home / "kd"
    result = invoke("distill", "--teacher", teacher, "--student", "mlp_32", "--method", "kd",
                    "--epochs", 2, "--out", out, "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    (run,) = _runs(home, "kd")
    client = MlflowClient(LocalMlflowStore(home / "store").uri)
    assert run.info.status == "FINISHED"
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    assert tags["mlflow.source.name"] == "pcd distill" and tags["mlflow.user"]
    assert tags[Tags.KIND] == "distill" and tags["pcd.run_dir"] == str(out.resolve())
    assert params["method"] == "kd" and params["arch"] == "mlp_32"
    assert params["data.name"] == "digits" and params["epochs"] == "2"
    history = client.get_metric_history(run.info.run_id, "val_top1")
    assert sorted(m.step for m in history) == [1, 2]
    assert "test_best_val_top1" in metrics and "test_last_top1" in metrics
    files = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"metrics.jsonl", "summary.json", "checkpoint"} <= files
    assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")] == [
        "checkpoint/best.pt"
    ]
    # the command says how to open it: the store's UI, then the run in the ML view
    store = LocalMlflowStore(home / "store")
    assert f"mlflow ui --backend-store-uri {store.uri} --port 5000" in result.stdout
    link = (
        f"http://127.0.0.1:5000/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
        "?workflowType=machine_learning"
    )
    assert link in result.stdout


def test_a_failed_distill_is_a_failed_run_with_the_reason(teacher: Path, home: Path) -> None:
    # the teacher loads; the data set it is asked to train on is missing (found in training)
    result = invoke("distill", "--teacher", teacher, "--student", "mlp_32", "--method", "kd",
                    "--dataset", "cifar10", "--data-root", home / "nothing", "--epochs", 1,
                    "--out", home / "broken", "-q")  # fmt: skip
    assert result.exit_code == 1, result.output
    (run,) = _runs(home, "broken")
    assert run.info.status == "FAILED"
    error = result.stderr.strip().removeprefix("error: ")
    assert run.data.tags[Tags.ERROR] and run.data.tags[Tags.ERROR] in error


def test_no_track_records_nothing(teacher: Path, home: Path) -> None:
    before = len(_runs(home))
    result = invoke("distill", "--teacher", teacher, "--student", "mlp_32", "--method", "kd",
                    "--epochs", 1, "--out", home / "untracked", "--no-track", "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert len(_runs(home)) == before and not _runs(home, "untracked")
    assert "MLflow" not in result.stdout


def test_an_unreachable_tracking_server_is_one_line(
    teacher: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("PCD_MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("PCD_MLFLOW_OUTAGE_S", "0")  # no retries, neither ours nor MLflow's
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    result = invoke("distill", "--teacher", teacher, "--student", "mlp_32", "--method", "kd",
                    "--epochs", 1, "--out", home / "no-server", "-q")  # fmt: skip
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: run tracking failed: "), lines
    assert "--no-track" in lines[0]
