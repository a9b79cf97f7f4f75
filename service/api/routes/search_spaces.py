"""The shipped search spaces (read-only)."""

from __future__ import annotations

from fastapi import APIRouter

from search_spaces import builtin_names, load_spec
from service.api.deps import ReadAccess
from service.api.errors import ApiError
from service.api.schemas import SearchSpaceOut, problem_responses

router = APIRouter(
    prefix="/v1/search-spaces",
    tags=["search spaces"],
    dependencies=[ReadAccess],
    responses=problem_responses(401, 422),
)


@router.get("")
def list_spaces() -> list[SearchSpaceOut]:
    out = []
    for name in builtin_names():
        spec = load_spec(name)
        out.append(
            SearchSpaceOut(
                name=name, method=spec.method, student=spec.student, description=spec.description
            )
        )
    return out


@router.get("/{name}", responses=problem_responses(404))
def get_space(name: str) -> SearchSpaceOut:
    if name not in builtin_names():
        raise ApiError(404, f"no search space {name!r}; one of {', '.join(builtin_names())}")
    spec = load_spec(name)
    return SearchSpaceOut(
        name=name,
        method=spec.method,
        student=spec.student,
        description=spec.description,
        spec=spec.model_dump(mode="json"),
    )
