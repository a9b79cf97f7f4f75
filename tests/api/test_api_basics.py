"""Auth, validation, idempotency and errors of the real app under uvicorn."""

from __future__ import annotations

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


def test_health_is_open_and_everything_else_needs_a_token(api) -> None:
    with api.client(headers={}) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        _problem(c.get("/v1/studies"), 401, "Bearer")
        assert c.get("/v1/studies").headers["www-authenticate"] == "Bearer"
        _problem(c.get("/v1/studies", headers={"Authorization": "Bearer nope"}), 401, "unknown")
    with api.client(headers=RO) as c:
        assert c.get("/v1/studies").status_code == 200
        _problem(c.post("/v1/studies", json=SMALL), 403, "read-only")
    log = (api.root / "api.log").read_text()
    assert "rw-token" not in log and "ro-token" not in log


def test_validate_only_and_bad_specs(api) -> None:
    with api.client(headers=RW) as c:
        ok = c.post("/v1/studies", params={"validate_only": "true"}, json=SMALL)
        assert ok.status_code == 200 and ok.json()["spec"]["budget"]["trials"] == 2
        assert c.get("/v1/studies").json()["total"] == 0  # nothing created
        bad = {**SMALL, "overrides": {"budget.trials": 0}}
        _problem(c.post("/v1/studies", json=bad), 422, "budget.trials")
        _problem(c.post("/v1/studies", json={"search_space": "nope"}), 422, "no space named")
        escape = {**SMALL, "overrides": {**SMALL["overrides"], "data.root": "../../etc"}}
        _problem(c.post("/v1/studies", json=escape), 422, "data.root")
        teacher = {
            **SMALL,
            "overrides": {**SMALL["overrides"], "teacher": {"checkpoint": "/etc/passwd"}},
        }
        _problem(c.post("/v1/studies", json=teacher), 422, "teacher.checkpoint")
        big = {**SMALL, "overrides": {**SMALL["overrides"], "budget.trials": 100000}}
        _problem(c.post("/v1/studies", json=big), 422, "budget.trials")
        _problem(c.get("/v1/studies/missing"), 404, "no study")
        _problem(
            c.post(
                "/v1/studies", content=b"x" * 300_000, headers={"content-type": "application/json"}
            ),
            413,
            "limited",
        )


def test_idempotent_submit(api) -> None:
    with api.client(headers={**RW, "Idempotency-Key": "abc"}) as c:
        first = c.post("/v1/studies", json=SMALL)
        again = c.post("/v1/studies", json=SMALL)
        assert first.status_code == 201 and again.status_code == 200
        assert first.json()["id"] == again.json()["id"]
        other = {**SMALL, "overrides": {**SMALL["overrides"], "budget.trials": 3}}
        _problem(c.post("/v1/studies", json=other), 409, "different study")
        assert c.get("/v1/studies").json()["total"] == 1


def test_search_spaces_and_metrics(api) -> None:
    with api.client(headers=RO) as c:
        names = [s["name"] for s in c.get("/v1/search-spaces").json()]
        assert "pcd-digits" in names
        assert c.get("/v1/search-spaces/pcd-digits").json()["spec"]["method"] == "pcd"
        _problem(c.get("/v1/search-spaces/nope"), 404, "no search space")
        assert "pcd_studies" in c.get("/metrics").text
        ready = c.get("/readyz").json()
        assert ready["ready"] and ready["checks"]["database"] == "ok"
