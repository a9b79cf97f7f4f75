"""No 500s from bad input or the store: NUL characters, deep nesting and non-finite numbers
are 422s naming the field; a study deleted under a resume or cancel is 404 (never 202); a
database outage is 503 + Retry-After on every route that needs the database."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from pcd_testing.app import app_without_drivers
from pcd_testing.proxy import TcpProxy
from sqlalchemy import text

from service.api.validation import escapes
from service.store import Store

from .conftest import RW
from .test_api_basics import SMALL, _problem


def _submit(client, overrides: dict, **params):
    body = {**SMALL, "overrides": {**SMALL["overrides"], **overrides}}
    return client.post("/v1/studies", params=params, json=body, headers=RW)


@pytest.mark.parametrize(
    "field,value",
    [
        ("data.root", "ok\x00/../x"),
        ("teacher", {"checkpoint": "t\x00.pt"}),
        ("description", "\x00"),
    ],
)
def test_nul_characters_are_422_naming_the_field(inproc, field, value) -> None:
    response = _submit(inproc, {field: value}, validate_only="true")
    _problem(response, 422, f"overrides.{field}")
    assert "NUL" in response.json()["detail"]


def test_paths_with_nul_never_resolve(tmp_path) -> None:
    assert escapes(tmp_path, "a\x00b") and not escapes(tmp_path, "a/b")


def test_deep_nesting_is_422(inproc) -> None:
    nested: object = 1
    for _ in range(300):
        nested = [nested]
    when = {"type": "float", "low": 0.1, "high": 3.0, "when": {"stages": nested}}
    _problem(_submit(inproc, {"space.alpha": when}), 422, "nested more than 32 levels deep")
    deeper = b"[" * 100_000 + b"]" * 100_000  # past the parser's own recursion limit
    headers = {**RW, "content-type": "application/json"}
    _problem(inproc.post("/v1/studies", content=deeper, headers=headers), 422, "nested")


def test_huge_integers_are_422(inproc) -> None:
    _problem(_submit(inproc, {"seed": 2**64}), 422, "overrides.seed: integers are limited")


@pytest.fixture
def on_postgres(app_settings, postgres_url):
    settings = app_settings.model_copy(update={"database_url": postgres_url})
    with TestClient(app_without_drivers(settings), raise_server_exceptions=False) as c:
        yield c


def test_bad_ids_and_non_finite_numbers_on_postgres(on_postgres) -> None:
    client = on_postgres
    for method, path in [
        ("GET", "/v1/studies/a%00b"),
        ("GET", "/v1/studies/a%00b/trials"),
        ("POST", "/v1/studies/a%00b/cancel"),
        ("POST", "/v1/studies/a%00b/resume"),
        ("DELETE", "/v1/studies/a%00b"),
    ]:
        _problem(client.request(method, path, headers=RW), 404, "no study")
    text_body = json.dumps({**SMALL, "overrides": {"budget.time_limit_s": "@"}})
    headers = {**RW, "content-type": "application/json"}
    response = client.post(
        "/v1/studies", content=text_body.replace('"@"', "Infinity"), headers=headers
    )
    _problem(response, 422, "overrides.budget.time_limit_s")
    assert client.get("/v1/studies", headers=RW).json()["total"] == 0


def _delete_before_next_transition(monkeypatch) -> None:
    """The study is deleted (by another request) between the route's lookup and its write."""
    real = Store.transition

    def deleted_first(self, study_id, *args, **kwargs):
        with self.engine.begin() as conn:
            conn.execute(text("delete from studies where id = :id"), {"id": study_id})
        return real(self, study_id, *args, **kwargs)

    monkeypatch.setattr(Store, "transition", deleted_first)


@pytest.mark.parametrize("action,status", [("resume", "cancelled"), ("cancel", "queued")])
def test_a_study_deleted_under_a_write_is_404(inproc, monkeypatch, action, status) -> None:
    study_id = _submit(inproc, {}).json()["id"]
    if status == "cancelled":
        assert inproc.post(f"/v1/studies/{study_id}/cancel", headers=RW).status_code == 202
    _delete_before_next_transition(monkeypatch)
    _problem(inproc.post(f"/v1/studies/{study_id}/{action}", headers=RW), 404, "no study")


def test_a_database_outage_is_503_with_retry_after(app_settings, postgres_url) -> None:
    proxy = TcpProxy()
    url = postgres_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    settings = app_settings.model_copy(update={"database_url": url})
    try:
        with TestClient(app_without_drivers(settings), raise_server_exceptions=False) as c:
            study_id = _submit(c, {}).json()["id"]
            proxy.close()
            for method, path in [
                ("GET", "/v1/studies"),
                ("GET", f"/v1/studies/{study_id}"),
                ("GET", f"/v1/studies/{study_id}/trials"),
                ("POST", f"/v1/studies/{study_id}/cancel"),
                ("POST", f"/v1/studies/{study_id}/resume"),
                ("DELETE", f"/v1/studies/{study_id}"),
                ("GET", "/metrics"),
            ]:
                response = c.request(method, path, headers=RW)
                _problem(response, 503, "database is unreachable")
                assert response.headers["retry-after"] == "5", (method, path)
            _problem(_submit(c, {}), 503, "database is unreachable")
            assert c.get("/readyz").json()["checks"]["database"].startswith("unreachable")
            proxy.reopen()
            assert c.get(f"/v1/studies/{study_id}", headers=RW).json()["status"] == "queued"
    finally:
        proxy.close()
