"""Auth, validation, idempotency and errors, with the app in process."""

from __future__ import annotations

import logging

from .conftest import RO, RW

SMALL = {
    "search_space": "pcd-digits",
    "overrides": {
        "budget.trials": 2,
        "budget.max_epochs": 2,
        "teacher.epochs": 2,
        "scheduler.type": "none",
        "promotion.seeds": 0,
    },
}


def _problem(response, status: int, contains: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and contains in body["detail"], body


def test_health_is_open_and_everything_else_needs_a_token(inproc, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    c = inproc
    assert c.get("/healthz").json() == {"status": "ok"}
    _problem(c.get("/v1/studies"), 401, "Bearer")
    assert c.get("/v1/studies").headers["www-authenticate"] == "Bearer"
    _problem(c.get("/v1/studies", headers={"Authorization": "Bearer nope"}), 401, "unknown")
    assert c.get("/v1/studies", headers=RO).status_code == 200
    _problem(c.post("/v1/studies", json=SMALL, headers=RO), 403, "read-only")
    _problem(c.post("/v1/studies", json=SMALL, headers={"Authorization": "Basic x"}), 401, "Bearer")
    assert "rw-token" not in caplog.text and "ro-token" not in caplog.text


def test_validate_only_and_bad_specs(inproc) -> None:
    c = inproc
    c.headers.update(RW)
    ok = c.post("/v1/studies", params={"validate_only": "true"}, json=SMALL)
    assert ok.status_code == 200 and ok.json()["spec"]["budget"]["trials"] == 2
    assert c.get("/v1/studies").json()["total"] == 0  # nothing created
    bad = {**SMALL, "overrides": {"budget.trials": 0}}
    _problem(c.post("/v1/studies", json=bad), 422, "budget.trials")
    _problem(c.post("/v1/studies", json={"search_space": "nope"}), 422, "no space named")
    escape = {**SMALL, "overrides": {**SMALL["overrides"], "data.root": "../../etc"}}
    _problem(c.post("/v1/studies", json=escape), 422, "data.root")
    teacher = {**SMALL, "overrides": {**SMALL["overrides"], "teacher": {"checkpoint": "/etc/pw"}}}
    _problem(c.post("/v1/studies", json=teacher), 422, "teacher.checkpoint")
    big = {**SMALL, "overrides": {**SMALL["overrides"], "budget.trials": 100000}}
    _problem(c.post("/v1/studies", json=big), 422, "budget.trials")
    _problem(c.get("/v1/studies/missing"), 404, "no study")
    too_big = c.post(
        "/v1/studies", content=b"x" * 300_000, headers={"content-type": "application/json"}
    )
    _problem(too_big, 413, "limited")


def test_submit_answers_201_with_its_location(inproc) -> None:
    created = inproc.post("/v1/studies", json=SMALL, headers=RW)
    assert created.status_code == 201
    study_id = created.json()["id"]
    assert created.headers["location"] == f"http://testserver/v1/studies/{study_id}"
    assert created.json()["status"] == "queued" and created.json()["links"]["self"].endswith(
        study_id
    )


def test_idempotent_submit(inproc) -> None:
    c = inproc
    c.headers.update({**RW, "Idempotency-Key": "abc"})
    first = c.post("/v1/studies", json=SMALL)
    again = c.post("/v1/studies", json=SMALL)
    assert first.status_code == 201 and again.status_code == 200
    assert first.json()["id"] == again.json()["id"]
    other = {**SMALL, "overrides": {**SMALL["overrides"], "budget.trials": 3}}
    _problem(c.post("/v1/studies", json=other), 409, "different study")
    assert c.get("/v1/studies").json()["total"] == 1


def test_search_spaces_and_metrics(inproc) -> None:
    c = inproc
    c.headers.update(RO)
    names = [s["name"] for s in c.get("/v1/search-spaces").json()]
    assert "pcd-digits" in names
    assert c.get("/v1/search-spaces/pcd-digits").json()["spec"]["method"] == "pcd"
    _problem(c.get("/v1/search-spaces/nope"), 404, "no search space")
    metrics = c.get("/metrics").text
    assert "pcd_studies" in metrics
    assert 'pcd_http_requests_total{method="GET",route="/v1/search-spaces",status="200"}' in (
        metrics
    )
    ready = c.get("/readyz").json()
    assert ready["ready"] and ready["checks"]["database"] == "ok"


def test_errors_are_documented_as_the_server_sends_them(inproc) -> None:
    """Every declared error of an authenticated route is a Problem as problem+json (FastAPI's
    default 422 would document a JSON body the server never sends)."""
    spec = inproc.get("/openapi.json").json()
    declared = 0
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if int(status) < 400:
                    continue
                declared += 1
                schema = response["content"]["application/problem+json"]["schema"]
                assert schema["title"] == "Problem", (method, path, status)
                assert "application/json" not in response["content"], (method, path, status)
            if path.startswith("/v1/"):
                assert "401" in operation["responses"], (method, path)
    assert declared >= 30
    assert "HTTPValidationError" not in str(spec["paths"])
