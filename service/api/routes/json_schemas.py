"""JSON Schemas of what the API takes, for clients that validate before they submit."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from service.api.deps import ReadAccess
from service.api.errors import ApiError
from service.api.openapi import json_schemas
from service.api.schemas import problem_responses

router = APIRouter(
    prefix="/v1/schemas",
    tags=["schemas"],
    dependencies=[ReadAccess],
    responses=problem_responses(401, 404, 422),  # 422: FastAPI would declare its own
)


@router.get("/{name}")
def get_schema(name: str) -> dict[str, Any]:
    """A JSON Schema (2020-12): `study-spec`, a full study spec (as in a YAML search space),
    or `study-request`, the body of POST /v1/studies (a full spec or a named space with
    overrides). Rules between fields are checked on submit (`?validate_only=true`)."""
    schemas = json_schemas()
    if name not in schemas:
        raise ApiError(404, f"no schema {name!r}; one of {', '.join(schemas)}")
    return schemas[name]
