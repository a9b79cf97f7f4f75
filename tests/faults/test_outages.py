"""The study store (Postgres) and the MLflow server made unreachable mid-study through the
TCP proxy in front of each, then restored."""

from __future__ import annotations

import time

import httpx
import pytest
from pcd_testing.processes import wait_for

from .conftest import Stack, study

pytestmark = pytest.mark.slow  # real processes: a study each

OUTAGE_S = 6.0


def _problem(response: httpx.Response, status: int, contains: str) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/problem+json")
    assert contains in response.json()["detail"], response.text


def test_study_store_unreachable_then_restored(stack: Stack) -> None:
    study_id = stack.submit(study(trials=2, epochs=3))
    stack.running_trial(study_id)
    stack.db.close()
    stack.fault(f"Postgres unreachable {OUTAGE_S:.0f} s")
    answers = 0
    with stack.api.client() as c:
        time.sleep(1.1)  # past the 1 s view cache of GET /v1/studies/{id}
        deadline = time.monotonic() + OUTAGE_S
        while time.monotonic() < deadline:
            for method, path in [
                ("GET", f"/v1/studies/{study_id}"),
                ("GET", "/v1/studies"),
                ("POST", f"/v1/studies/{study_id}/cancel"),
            ]:
                response = c.request(method, path)
                _problem(response, 503, "database is unreachable")
                assert response.headers["retry-after"], response.headers
                answers += 1
            _problem(c.post("/v1/studies", json=study()), 503, "database is unreachable")
            assert c.get("/readyz").status_code == 503
            assert c.get("/healthz").status_code == 200
            time.sleep(0.5)
        stack.db.reopen()
        # the next requests find the database again (stale pooled connections replaced)
        assert wait_for(lambda: c.get(f"/v1/studies/{study_id}").status_code == 200, 15, 0.3)
        assert c.get("/readyz").status_code == 200
    stack.figures["answers_503"] = answers
    stack.finished(study_id, trials=2)
    with stack.api.client() as c:
        assert c.get("/v1/studies").json()["total"] == 1  # nothing submitted in the outage


def test_mlflow_unreachable_then_restored(stack: Stack) -> None:
    study_id = stack.submit(study(trials=2, epochs=4))
    stack.running_trial(study_id)
    stack.mlflow.close()
    stack.fault(f"MLflow unreachable {OUTAGE_S:.0f} s")
    with stack.api.client() as c:
        deadline = time.monotonic() + OUTAGE_S
        while time.monotonic() < deadline:
            ready = c.get("/readyz")  # MLflow is reported, not gating readiness
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"]["mlflow"].startswith("unreachable"), ready.text
            time.sleep(0.5)
    stack.mlflow.reopen()
    stack.finished(study_id, trials=2)
