"""MLflow links in API responses: on the UI's public address (PCD_MLFLOW_PUBLIC_URL; the
tracking URI's own when it is http(s) and nothing is set), in MLflow 3's model-training view
(``?workflowType=machine_learning``); none where no address is known. Studies without a
tracking server are read from the one local store, and a study of an older version from the
store in its own folder."""

from __future__ import annotations

from fastapi.testclient import TestClient
from mlflow.tracking import MlflowClient
from pcd_testing.app import app_without_drivers

from service import mlflow_links
from service.runner.tracking import open_local_store
from service.store import StudyStatus
from service.study_files import EXPERIMENT, StudyFolder, StudyState, Tags, mlflow_store_uri

from .conftest import RW


def _study(client: TestClient, settings, own_store: bool = False) -> tuple[str, str, str]:
    """A running study with one finished trial, tracked in the shared local store (or, as
    studies of older versions were, in a store in its folder): (id, experiment, run)."""
    store = client.app.state.store
    record, _ = store.create("s", {"budget": {"trials": 1}})
    folder = settings.studies_dir / record.id
    folder.mkdir(parents=True, exist_ok=True)
    uri = open_local_store(folder if own_store else settings.local_mlflow_dir)
    assert (uri == mlflow_store_uri(folder)) is own_store
    mlflow = MlflowClient(uri)
    experiment_id = mlflow.get_experiment_by_name(EXPERIMENT).experiment_id
    parent = mlflow.create_run(experiment_id).info.run_id
    trial = mlflow.create_run(experiment_id, tags={Tags.PARENT_RUN: parent, Tags.TRIAL_ID: "t1"})
    mlflow.set_terminated(trial.info.run_id, "FINISHED")
    StudyFolder(folder).write_state(StudyState(parent_run_id=parent, experiment_id=experiment_id))
    store.transition(record.id, StudyStatus.running, driver="pid:1", study_dir=str(folder))
    return record.id, experiment_id, parent


def test_links_use_the_public_url_and_the_ml_view(app_settings) -> None:
    settings = app_settings.model_copy(update={"mlflow_public_url": "http://localhost:5000/"})
    with TestClient(app_without_drivers(settings)) as client:
        study_id, experiment_id, parent = _study(client, settings)
        study = client.get(f"/v1/studies/{study_id}", headers=RW).json()
    assert study["trials"]["completed"] == 1  # read from the shared local store
    base = f"http://localhost:5000/#/experiments/{experiment_id}"
    assert study["links"]["mlflow"] == f"{base}/runs/{parent}?workflowType=machine_learning"
    assert study["links"]["mlflow_experiment"] == f"{base}?workflowType=machine_learning"


def test_an_older_study_reads_its_own_store_and_has_no_links_without_a_url(app_settings) -> None:
    with TestClient(app_without_drivers(app_settings)) as client:
        study_id, _, _ = _study(client, app_settings, own_store=True)
        study = client.get(f"/v1/studies/{study_id}", headers=RW).json()
    assert study["trials"]["completed"] == 1  # read from the store in its folder
    assert study["links"]["mlflow"] is None and study["links"]["mlflow_experiment"] is None


def test_the_tracking_server_is_the_default_public_url() -> None:
    links = mlflow_links.links("http://mlflow:5000", None, "3", "r1")
    assert (
        links["mlflow"]
        == "http://mlflow:5000/#/experiments/3/runs/r1?workflowType=machine_learning"
    )
    assert mlflow_links.links("sqlite:///x/mlflow.db", None, "3", "r1")["mlflow"] is None
    assert mlflow_links.links("http://mlflow:5000", "https://ml.example.org", "3", None) == {
        "mlflow": None,
        "mlflow_experiment": "https://ml.example.org/#/experiments/3?workflowType=machine_learning",
    }
