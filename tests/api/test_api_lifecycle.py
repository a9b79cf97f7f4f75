"""Studies through the real app: run to the end, cancel, survive an API restart."""

from __future__ import annotations

import time

from .conftest import RW
from .test_api_basics import SMALL


def _wait(client, study_id: str, statuses: set[str], timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/v1/studies/{study_id}").json()
        if body["status"] in statuses:
            return body
        time.sleep(1)
    raise AssertionError(f"study {study_id} still {body['status']}: {body}")


def test_submit_run_succeed_then_restart_and_cancel(api) -> None:
    api.stop()  # as deployed: with a warm driver waiting for the first study
    api.env["PCD_WARM_DRIVER"] = "true"
    api.start()
    with api.client(headers=RW) as c:
        created = c.post("/v1/studies", json=SMALL)
        assert created.status_code == 201
        study_id = created.json()["id"]
        assert created.headers["location"].endswith(f"/v1/studies/{study_id}")
        _wait(c, study_id, {"running"}, timeout=30)

    # the API restarts while the study runs: the driver lives on and is tracked again
    api.stop()
    api.start()
    with api.client(headers=RW) as c:
        done = _wait(c, study_id, {"succeeded", "failed"})
        assert done["status"] == "succeeded", done
        assert done["trials"]["completed"] + done["trials"]["stopped_early"] == 2
        assert done["best"]["value"] > 50 and done["best"]["config"]["warmup"] == 2
        driver_log = (api.root / "studies" / study_id / "driver.log").read_text()
        assert "warm driver (Ray connected, workers started) ready" in driver_log
        assert "phase: search" in driver_log or "] search" in driver_log
        trials = c.get(f"/v1/studies/{study_id}/trials").json()
        assert trials["total"] == 2 and trials["items"][0]["epochs"] == 2
        for item in trials["items"]:  # best over the epochs, last = the final epoch's
            assert item["best"] >= item["last"]["val_top1"]
        assert trials["items"][0]["best"] == done["best"]["value"]
        assert c.post(f"/v1/studies/{study_id}/resume").status_code == 409

        longer = {
            **SMALL,
            "overrides": {**SMALL["overrides"], "budget.max_epochs": 50, "budget.trials": 4},
        }
        second = c.post("/v1/studies", json=longer).json()["id"]
        _wait(c, second, {"running"}, timeout=30)
        cancelled = c.post(f"/v1/studies/{second}/cancel")
        assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"
        assert c.delete(f"/v1/studies/{study_id}").status_code == 204
        assert c.get(f"/v1/studies/{study_id}").status_code == 404
        resumed = c.post(f"/v1/studies/{second}/resume")
        assert resumed.status_code == 202 and resumed.json()["status"] == "queued"
        c.post(f"/v1/studies/{second}/cancel")
