"""The OpenAPI document is valid OpenAPI, declares what /docs needs (the bearer scheme, the
study body's schema, the status vocabularies), and the app's real answers, errors included,
match the schemas they are declared with."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from openapi_spec_validator import validate as validate_openapi

from search_spaces import load_spec
from service.store import StudyStatus
from service.study_files import TrialOutcome

from .conftest import RO, RW
from .test_api_basics import SMALL, _problem

BODILESS = {204, 304}
# formats too: a date-time without its offset (as SQLite gives timestamps back) is not one
FORMATS = jsonschema.Draft202012Validator.FORMAT_CHECKER


@pytest.fixture
def document(inproc) -> dict[str, Any]:
    return inproc.get("/openapi.json").json()


def _declared_schema(document: dict, method: str, path: str, response) -> dict[str, Any]:
    """The schema ``document`` declares for ``response`` to ``method path`` (a path template),
    with the document's components to resolve its references in."""
    operation = document["paths"][path][method.lower()]
    declared = operation["responses"].get(str(response.status_code))
    assert declared is not None, f"{method} {path}: {response.status_code} is not declared"
    media_type = response.headers["content-type"].split(";")[0]
    assert media_type in declared["content"], (method, path, media_type, list(declared["content"]))
    return {**declared["content"][media_type]["schema"], "components": document["components"]}


def check_declared(document: dict, method: str, path: str, response) -> None:
    """``response`` is declared for ``method path`` and its body matches the schema."""
    if response.status_code in BODILESS:
        operation = document["paths"][path][method.lower()]
        assert str(response.status_code) in operation["responses"], (method, path)
        assert response.content == b""
        return
    schema = _declared_schema(document, method, path, response)
    validator = jsonschema.Draft202012Validator(schema, format_checker=FORMATS)
    validator.validate(response.json())


def test_the_document_is_valid_openapi(document) -> None:
    validate_openapi(document)


def test_the_bearer_scheme_is_declared_on_every_v1_route(document) -> None:
    """/docs shows Authorize, and "Try it out" sends the token."""
    schemes = document["components"]["securitySchemes"]
    assert schemes["BearerToken"]["type"] == "http"
    assert schemes["BearerToken"]["scheme"] == "bearer"
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            secured = operation.get("security") == [{"BearerToken": []}]
            assert secured == path.startswith("/v1/"), (method, path)
            names = [p["name"].lower() for p in operation.get("parameters", [])]
            assert "authorization" not in names, (method, path)  # the scheme sends it


def test_the_study_body_is_typed(document) -> None:
    body = document["paths"]["/v1/studies"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/StudyRequest"}
    schemas = document["components"]["schemas"]
    request = schemas["StudyRequest"]
    assert [s["$ref"].rsplit("/", 1)[1] for s in request["anyOf"]] == [
        "StudySpec",
        "NamedSpaceRequest",
    ]
    assert {"name", "teacher", "student"} <= set(schemas["StudySpec"]["required"])
    assert schemas["StudySpec"]["additionalProperties"] is False
    # the example and a shipped spec are valid bodies by the document's own schema
    validator = jsonschema.Draft202012Validator(
        {**body["schema"], "components": document["components"]}
    )
    validator.validate(body["example"])
    validator.validate(load_spec("pcd-digits").model_dump(mode="json"))
    assert not validator.is_valid({"search_space": "pcd-digits", "overides": {}})  # a typo


def _enum(schemas: dict, prop: dict) -> set[str]:
    """The values a property's schema enumerates (through references and optionals)."""
    if "$ref" in prop:
        return _enum(schemas, schemas[prop["$ref"].rsplit("/", 1)[1]])
    if "anyOf" in prop:
        return set().union(*(_enum(schemas, option) for option in prop["anyOf"]))
    return set(prop.get("enum", []))


def test_statuses_are_enumerated(document) -> None:
    schemas = document["components"]["schemas"]

    def values(model: str, field: str) -> set[str]:
        return _enum(schemas, schemas[model]["properties"][field])

    assert values("StudyOut", "status") == {s.value for s in StudyStatus}
    assert values("TrialOut", "status") == {"RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"}
    assert values("TrialOut", "outcome") == {o.value for o in TrialOutcome}
    # a trial's state is named as the study's counters count it (pending: no run yet)
    counters = set(schemas["TrialCounters"]["properties"])
    assert values("TrialOut", "state") | {"pending"} == counters


def test_the_study_schemas_are_served(inproc) -> None:
    c = inproc
    _problem(c.get("/v1/schemas/study-spec"), 401, "Bearer")
    spec_schema = c.get("/v1/schemas/study-spec", headers=RO)
    assert spec_schema.status_code == 200
    validator = jsonschema.Draft202012Validator(spec_schema.json())
    validator.check_schema(spec_schema.json())
    good = load_spec("pcd-digits").model_dump(mode="json")
    validator.validate(good)
    errors = list(validator.iter_errors({**good, "budget": {"trials": "many"}}))
    assert [list(e.absolute_path) for e in errors] == [["budget", "trials"]]
    request = jsonschema.Draft202012Validator(c.get("/v1/schemas/study-request", headers=RO).json())
    request.validate(SMALL)
    request.validate(good)
    assert not request.is_valid({"search_space": 3})
    _problem(c.get("/v1/schemas/nope", headers=RO), 404, "study-spec")


def test_a_missing_or_foreign_authorization_is_our_401(inproc) -> None:
    """HTTPBearer's own answer (403, or 401 without a problem body) never leaks."""
    for authorization in (None, "Basic x", "Bearer", "Bearer "):
        headers = {"Authorization": authorization} if authorization else {}
        response = inproc.get("/v1/studies", headers=headers)
        _problem(response, 401, "Bearer")
        assert response.headers["www-authenticate"] == "Bearer"
    _problem(inproc.get("/v1/studies", headers={"Authorization": "bearer nope"}), 401, "unknown")
    lower_case = {"Authorization": "bearer ro-token"}  # the scheme's name is case-insensitive
    assert inproc.get("/v1/studies", headers=lower_case).status_code == 200


def test_answers_match_their_declared_schemas(inproc, document) -> None:
    c = inproc
    answers = []

    def call(method: str, url: str, path: str, **kwargs):
        response = c.request(method, url, **kwargs)
        answers.append((method, path, response))
        return response

    studies, study = "/v1/studies", "/v1/studies/{study_id}"
    call("GET", studies, studies)  # 401
    call("GET", studies, studies, headers={"Authorization": "Bearer nope"})  # 401
    call("POST", studies, studies, json=SMALL, headers=RO)  # 403
    call("GET", f"{studies}/missing", study, headers=RO)  # 404
    call("POST", f"{studies}?validate_only=true", studies, json=SMALL, headers=RW)  # 200
    bad = {**SMALL, "overrides": {"budget.trials": -1}}
    call("POST", studies, studies, json=bad, headers=RW)  # 422 from the spec
    call("GET", f"{studies}?limit=0", studies, headers=RO)  # 422 from FastAPI
    too_big = {"content": b"x" * 300_000, "headers": {"content-type": "application/json", **RW}}
    call("POST", studies, studies, **too_big)  # 413
    keyed = {**RW, "Idempotency-Key": "k1"}
    created = call("POST", studies, studies, json=SMALL, headers=keyed)  # 201
    call("POST", studies, studies, json=SMALL, headers=keyed)  # 200: the same study
    other = {**SMALL, "overrides": {**SMALL["overrides"], "budget.trials": 3}}
    call("POST", studies, studies, json=other, headers=keyed)  # 409
    study_id = created.json()["id"]
    call("GET", f"{studies}/{study_id}", study, headers=RO)  # 200
    call("GET", studies, studies, headers=RO)  # 200
    call("GET", f"{studies}/{study_id}/trials", f"{study}/trials", headers=RO)  # 200
    call("POST", f"{studies}/{study_id}/resume", f"{study}/resume", headers=RW)  # 409: queued
    call("POST", f"{studies}/{study_id}/cancel", f"{study}/cancel", headers=RW)  # 202
    call("DELETE", f"{studies}/{study_id}", study, headers=RW)  # 204
    call("GET", "/v1/search-spaces", "/v1/search-spaces", headers=RO)
    call("GET", "/v1/search-spaces/pcd-digits", "/v1/search-spaces/{name}", headers=RO)
    call("GET", "/v1/schemas/study-spec", "/v1/schemas/{name}", headers=RO)
    call("GET", "/v1/schemas/nope", "/v1/schemas/{name}", headers=RO)  # 404
    call("GET", "/healthz", "/healthz")

    for method, path, response in answers:
        check_declared(document, method, path, response)
    seen = sorted({r.status_code for _, _, r in answers})
    assert seen == [200, 201, 202, 204, 401, 403, 404, 409, 413, 422], seen
