"""The API's JSON Schemas and its OpenAPI document.

POST /v1/studies reads its body itself (after authentication), so FastAPI cannot derive the
body's schema from a parameter: the route refers to ``StudyRequest`` (a full StudySpec or a
NamedSpaceRequest) and the document gets those models' schemas here; so does PATCH
/v1/studies/{id} with ``StudyUpdate``. The same schemas are
served standalone (``/v1/schemas/...``) for clients that validate before they submit.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fastapi import FastAPI
from pydantic import TypeAdapter
from pydantic.json_schema import models_json_schema

from search_spaces.schema import StudySpec
from service.api.schemas import NamedSpaceRequest, StudyUpdate

COMPONENTS = "#/components/schemas/{model}"
STUDY_REQUEST = "StudyRequest"
STUDY_REQUEST_REF = {"$ref": COMPONENTS.format(model=STUDY_REQUEST)}
STUDY_UPDATE_REF = {"$ref": COMPONENTS.format(model=StudyUpdate.__name__)}
DIALECT = "https://json-schema.org/draft/2020-12/schema"
_REQUEST_DESCRIPTION = (
    "a full study spec (as in a YAML search space), or a shipped search space by name with "
    "dotted overrides; rules between fields (known models, method options, bounds) are "
    "checked on submit: use ?validate_only=true to check without creating"
)


def study_request_components() -> dict[str, dict[str, Any]]:
    """The component schemas of the bodies the study routes read themselves: StudyRequest,
    StudyUpdate and what they refer to."""
    models = [(StudySpec, "validation"), (NamedSpaceRequest, "validation")]
    _, top = models_json_schema([*models, (StudyUpdate, "validation")], ref_template=COMPONENTS)
    request = {
        "title": STUDY_REQUEST,
        "description": _REQUEST_DESCRIPTION,
        "anyOf": [{"$ref": COMPONENTS.format(model=m.__name__)} for m, _ in models],
    }
    return {**top["$defs"], STUDY_REQUEST: request}


@cache
def json_schemas() -> dict[str, dict[str, Any]]:
    """Standalone JSON Schemas (2020-12) by the name /v1/schemas/{name} serves them under."""
    spec = TypeAdapter(StudySpec).json_schema()
    request = TypeAdapter(StudySpec | NamedSpaceRequest).json_schema()
    request.update(title=STUDY_REQUEST, description=_REQUEST_DESCRIPTION)
    return {
        "study-spec": {"$schema": DIALECT, **spec},
        "study-request": {"$schema": DIALECT, **request},
    }


def add_study_schemas(app: FastAPI) -> None:
    """Make ``app``'s OpenAPI document carry the study request's component schemas."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = FastAPI.openapi(app)  # caches it on app.openapi_schema
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            extra = study_request_components()
            clash = set(schemas) & set(extra)
            if clash:  # two models of one name would silently replace each other
                raise RuntimeError(f"OpenAPI component names used twice: {sorted(clash)}")
            schemas.update(extra)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
