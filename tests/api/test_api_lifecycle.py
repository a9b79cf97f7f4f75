"""Studies through the real app under uvicorn: one study runs to the end across an API
restart (with the warm driver, as deployed); each test checks one part of that story, so
that one failure does not hide the rest."""

from __future__ import annotations

import time

import pytest
from pcd_testing.processes import stop
from pcd_testing.servers import drivers

from service.study_files import StudyFolder

from .conftest import RW, Api
from .test_api_basics import SMALL


def _wait(client, study_id: str, statuses: set[str], timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/v1/studies/{study_id}").json()
        if body["status"] in statuses:
            return body
        time.sleep(1)
    raise AssertionError(f"study {study_id} still {body['status']}: {body}")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """(the API, the study's id, its final view): submitted to an API with a warm driver,
    running when that API restarts, finished under the next one."""
    root = tmp_path_factory.mktemp("lifecycle")
    api = Api(root)
    api.env["PCD_WARM_DRIVER"] = "true"
    api.start()
    try:
        with api.client(headers=RW) as c:
            created = c.post("/v1/studies", json=SMALL)
            assert created.status_code == 201, created.text
            study_id = created.json()["id"]
            _wait(c, study_id, {"running"}, timeout=30)
        # the API restarts while the study runs: the driver lives on and is tracked again
        api.stop()
        api.start()
        with api.client(headers=RW) as c:
            done = _wait(c, study_id, {"succeeded", "failed"})
        yield api, study_id, done
    finally:
        api.stop()
        stop(drivers(str(root)))  # drivers run in their own sessions


def test_a_study_survives_an_api_restart_and_succeeds(finished) -> None:
    _, _, done = finished
    assert done["status"] == "succeeded", done
    assert done["trials"]["completed"] + done["trials"]["stopped_early"] == 2
    assert done["best"]["value"] > 50 and done["best"]["config"]["warmup"] == 2


def test_the_warm_driver_ran_it(finished) -> None:
    api, study_id, _ = finished
    driver_log = StudyFolder(api.root / "studies" / study_id).driver_log.read_text()
    assert "warm driver (Ray connected, workers started) ready" in driver_log
    assert "phase: search" in driver_log or "] search" in driver_log


def test_trials_report_their_best_and_last_epochs(finished) -> None:
    api, study_id, done = finished
    with api.client(headers=RW) as c:
        trials = c.get(f"/v1/studies/{study_id}/trials").json()
    assert trials["total"] == 2 and trials["items"][0]["epochs"] == 2
    for item in trials["items"]:  # best over the epochs, last = the final epoch's
        assert item["best"] >= item["last"]["val_top1"]
    assert trials["items"][0]["best"] == done["best"]["value"]
    for item in trials["items"]:  # typed as in the space, though MLflow keeps strings
        config = item["config"]
        assert type(config["stages"]) is int and type(config["temperature"]) is float
        assert config["warmup"] == 2 and config["schedule"] in ("joint", "phased")
        assert item["state"] in ("completed", "stopped_early") and item["status"] == "FINISHED"


def test_a_running_study_is_cancelled_and_resumed(finished) -> None:
    api, study_id, _ = finished
    longer = {
        **SMALL,
        "overrides": {**SMALL["overrides"], "budget.max_epochs": 50, "budget.trials": 4},
    }
    with api.client(headers=RW) as c:
        assert c.post(f"/v1/studies/{study_id}/resume").status_code == 409  # it succeeded
        second = c.post("/v1/studies", json=longer).json()["id"]
        _wait(c, second, {"running"}, timeout=30)
        cancelled = c.post(f"/v1/studies/{second}/cancel")
        assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"
        resumed = c.post(f"/v1/studies/{second}/resume")
        assert resumed.status_code == 202 and resumed.json()["status"] == "queued"
        c.post(f"/v1/studies/{second}/cancel")


def test_a_finished_study_is_deleted_with_its_folder(finished) -> None:
    api, study_id, _ = finished
    with api.client(headers=RW) as c:
        assert c.delete(f"/v1/studies/{study_id}").status_code == 204
        assert c.get(f"/v1/studies/{study_id}").status_code == 404
    assert not (api.root / "studies" / study_id).exists()
