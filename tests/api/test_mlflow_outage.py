"""An MLflow outage, made real: the MLflow server behind a TCP proxy that the test closes
(connections refused) or blackholes (accepted, never answered), then reopens."""

from __future__ import annotations

import os
import subprocess
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from mlflow.tracking import MlflowClient
from pcd_testing.app import app_without_drivers
from pcd_testing.proxy import TcpProxy

from service.runner.study import ensure_experiment
from service.store import StudyStatus
from service.study_files import EXPERIMENT, StudyFolder, StudyState, Tags

from .conftest import RW, VENV_BIN


@pytest.fixture
def proxy(mlflow_server):
    p = TcpProxy(("127.0.0.1", int(mlflow_server.rsplit(":", 1)[1])))
    yield p
    p.close()


def _study_with_trials(store, settings, mlflow_url: str) -> str:
    """A running study whose parent run and two trial runs are on the MLflow server."""
    client = MlflowClient(mlflow_url)
    experiment_id = ensure_experiment(client, settings.studies_dir)
    parent = client.create_run(experiment_id).info.run_id
    for trial in ("t1", "t2"):
        run = client.create_run(
            experiment_id, tags={Tags.PARENT_RUN: parent, Tags.TRIAL_ID: trial}
        ).info.run_id
        client.log_metric(run, "val_top1", 50.0, step=1)
        client.set_terminated(run, status="FINISHED")
    record, _ = store.create("s", {"budget": {"trials": 2}})
    folder = settings.studies_dir / record.id
    folder.mkdir(parents=True)
    StudyFolder(folder).write_state(StudyState(parent_run_id=parent, experiment_id=experiment_id))
    store.transition(record.id, StudyStatus.running, driver="pid:1", study_dir=str(folder))
    return record.id


@pytest.mark.parametrize("outage", ["close", "blackhole"])
def test_reads_during_an_outage_answer_the_last_known_state(
    app_settings, mlflow_server, proxy, outage
) -> None:
    settings = app_settings.model_copy(
        update={"mlflow_tracking_uri": proxy.url, "mlflow_read_timeout_s": 1.0}
    )
    with TestClient(app_without_drivers(settings)) as client:
        study_id = _study_with_trials(client.app.state.store, settings, mlflow_server)
        trials = client.get(f"/v1/studies/{study_id}/trials", headers=RW).json()
        listed = client.get("/v1/studies", headers=RW).json()["items"][0]
        assert trials["total"] == 2 and not trials["stale"]
        assert listed["trials"]["completed"] == 2 and not listed["stale"]

        proxy.close()
        if outage == "blackhole":
            proxy.reopen("blackhole")
        time.sleep(2.1)  # past the progress cache's 2 s, so that MLflow is asked again
        during = client.get(f"/v1/studies/{study_id}/trials", headers=RW).json()
        assert during["stale"] and during["items"] == trials["items"]
        listed = client.get("/v1/studies", headers=RW).json()["items"][0]
        assert listed["stale"] and listed["trials"]["completed"] == 2

        proxy.close()
        proxy.reopen()
        after = client.get(f"/v1/studies/{study_id}/trials", headers=RW).json()
        assert not after["stale"] and after["items"] == trials["items"]


@pytest.mark.heavy  # a 10 s cut under a whole study; the fault suite cuts MLflow in make test
def test_a_driver_rides_out_an_mlflow_outage(tmp_path, mlflow_server, proxy) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "PCD_"))}
    env.update(
        RAY_USAGE_STATS_ENABLED="0",
        MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",  # MLflow's own retries would hide ours
        MLFLOW_HTTP_REQUEST_TIMEOUT="2",
        PCD_MLFLOW_OUTAGE_S="300",
    )
    study_dir = tmp_path / "study"
    sets = {
        "budget.trials": 2,
        "budget.max_epochs": 3,
        "teacher.epochs": 1,
        "scheduler.type": "none",
        "promotion.seeds": 0,
    }
    args = [str(VENV_BIN / "pcd"), "study", "run", "pcd-digits", "--quiet", "--num-cpus", "2"]
    args += ["--out", str(study_dir), "--tracking-uri", proxy.url]
    args += [x for k, v in sets.items() for x in ("--set", f"{k}={v}")]
    driver_log = StudyFolder(tmp_path).driver_log
    log = driver_log.open("w")
    driver = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        server = MlflowClient(mlflow_server)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and driver.poll() is None:
            experiment = server.get_experiment_by_name(EXPERIMENT)
            runs = server.search_runs([experiment.experiment_id]) if experiment else []
            if any(Tags.TRIAL_ID in r.data.tags for r in runs):
                break
            time.sleep(0.5)
        proxy.close()  # a trial runs: MLflow goes away for a while
        time.sleep(10)
        proxy.reopen()
        assert driver.wait(timeout=600) == 0, driver_log.read_text()[-3000:]
    finally:
        if driver.poll() is None:
            driver.kill()
    assert "MLflow unavailable" in driver_log.read_text()
    summary = StudyFolder(study_dir).read_summary()
    assert summary is not None and len(summary.trials) == 2 and summary.best_trial_id
    assert httpx.get(f"{mlflow_server}/health").status_code == 200
