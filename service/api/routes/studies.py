"""Studies: submit, list, follow, change the budget, cancel, resume, delete.

Routes validate and write the store; the supervisor starts drivers from the store, so a
write here only nudges it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from search_spaces.errors import describe_validation_error
from service.api.body import parse_json
from service.api.deps import (
    ReadAccess,
    SettingsDep,
    SpecValidatorDep,
    StoreDep,
    SupervisorDep,
    ViewsDep,
    WriteAccess,
)
from service.api.errors import ApiError
from service.api.openapi import STUDY_REQUEST_REF, STUDY_UPDATE_REF
from service.api.schemas import (
    StudyOut,
    StudyPage,
    StudyUpdate,
    TrialPage,
    ValidationOut,
    problem_responses,
)
from service.api.views import StudyViews
from service.settings import Settings
from service.store import InvalidTransition, Store, StudyRecord, StudyStatus
from service.store.db import IdempotencyConflict

JSON = "application/json"
# POST /v1/studies reads its body itself (after authentication), so it is documented here
SPEC_BODY = {
    "requestBody": {
        "required": True,
        "description": "a study spec, or {search_space: NAME, overrides: {dotted.key: value}}",
        "content": {
            JSON: {
                "schema": STUDY_REQUEST_REF,
                "example": {"search_space": "pcd-digits", "overrides": {"budget.trials": 4}},
            }
        },
    }
}
UPDATE_BODY = {
    "requestBody": {
        "required": True,
        "description": "what to change: the trial budget of a queued or running study",
        "content": {JSON: {"schema": STUDY_UPDATE_REF, "example": {"budget": {"trials": 40}}}},
    }
}
Offset = Annotated[int, Query(ge=0, le=1_000_000)]
Limit = Annotated[int, Query(ge=1, le=500)]

router = APIRouter(
    prefix="/v1/studies", tags=["studies"], responses=problem_responses(401, 422, 503)
)
WRITE_ERRORS = problem_responses(403, 404, 409)
SUBMIT_200 = {
    200: {
        "description": "validate_only: the spec as it would run; else the study that an "
        "earlier request with this Idempotency-Key created",
        "model": ValidationOut | StudyOut,
    }
}


def _self_url(request: Request, study_id: str) -> str:
    return str(request.url_for("get_study", study_id=study_id))


def _record(store: Store, study_id: str) -> StudyRecord:
    record = store.get(study_id)
    if record is None:
        raise ApiError(404, f"no study {study_id!r}")
    return record


@contextmanager
def _write_errors(study_id: str, hint: str = "") -> Iterator[None]:
    """A write's store errors as answers: a study deleted meanwhile is 404 (never 202), a
    status that does not allow the write 409."""
    try:
        yield
    except KeyError:
        raise ApiError(404, f"no study {study_id!r}") from None
    except InvalidTransition as err:
        raise ApiError(409, f"{err}{hint}") from None


def _existing_for_write(store: Store, views: StudyViews, study_id: str) -> None:
    """404 for an unknown study; else drop its cached views before the write."""
    _record(store, study_id)
    views.forget(study_id)


@router.post(
    "",
    status_code=201,
    dependencies=[WriteAccess],
    response_model=StudyOut,
    responses={**SUBMIT_200, **problem_responses(403, 409, 413)},
    openapi_extra=SPEC_BODY,
)
async def submit(
    request: Request,
    response: Response,
    store: StoreDep,
    supervisor: SupervisorDep,
    views: ViewsDep,
    validate_spec: SpecValidatorDep,
    validate_only: bool = Query(False, description="check the spec, create nothing"),
    idempotency_key: Annotated[str | None, Header(max_length=128)] = None,
):
    raw = await request.body()  # only now, after the token was checked
    spec = await validate_spec(raw)
    spec_json = spec.model_dump(mode="json")
    if validate_only:
        return Response(ValidationOut(spec=spec_json).model_dump_json(), media_type=JSON)

    def create() -> tuple[StudyRecord, bool, StudyOut]:
        try:
            record, created = store.create(spec.name, spec_json, idempotency_key=idempotency_key)
        except IdempotencyConflict as err:
            raise ApiError(409, str(err)) from None
        return record, created, views.study(record, _self_url(request, record.id))

    record, created, out = await run_in_threadpool(create)
    if created:
        supervisor.nudge()
    response.status_code = 201 if created else 200
    response.headers["Location"] = _self_url(request, record.id)
    return out


@router.get("", dependencies=[ReadAccess])
def list_studies(
    request: Request,
    store: StoreDep,
    views: ViewsDep,
    status: StudyStatus | None = None,
    offset: Offset = 0,
    limit: Limit = 50,
) -> StudyPage:
    records, total = store.list(status=status, offset=offset, limit=limit)
    items = [views.study(r, _self_url(request, r.id)) for r in records]
    return StudyPage(items=items, total=total, offset=offset, limit=limit)


@router.get(
    "/{study_id}",
    dependencies=[ReadAccess],
    response_model=StudyOut,
    responses=problem_responses(404),
)
async def get_study(request: Request, study_id: str, store: StoreDep, views: ViewsDep) -> Response:
    """A study's status and progress (a view at most 1 s old)."""

    def render() -> bytes:
        record = _record(store, study_id)
        return views.study(record, _self_url(request, study_id)).model_dump_json().encode()

    body = await views.rendered(study_id, str(request.base_url), render)
    return Response(body, media_type=JSON, headers={"Cache-Control": "max-age=1"})


@router.get("/{study_id}/trials", dependencies=[ReadAccess], responses=problem_responses(404))
def get_trials(
    study_id: str, store: StoreDep, views: ViewsDep, offset: Offset = 0, limit: Limit = 50
) -> TrialPage:
    trials, stale = views.trials(_record(store, study_id))
    return TrialPage(
        items=trials[offset : offset + limit],
        total=len(trials),
        offset=offset,
        limit=limit,
        stale=stale,
    )


def _parse_update(raw: bytes) -> StudyUpdate:
    try:
        return StudyUpdate.model_validate(parse_json(raw))
    except ValidationError as err:  # "budget.trials: ...", naming the field
        raise ApiError(422, describe_validation_error(err)) from None


def _check_budget(record: StudyRecord, trials: int, started: int, settings: Settings) -> None:
    """409 for a study whose budget cannot change; 422 naming the field for a budget this
    study cannot have."""
    if record.status not in (StudyStatus.queued, StudyStatus.running):
        raise ApiError(
            409, f"a {record.status} study's budget cannot change; only a queued or running one"
        )
    if int((record.spec.get("budget") or {}).get("trials", 0)) == 0:
        raise ApiError(409, "a fixed-configuration study (budget.trials 0) has no search budget")
    if record.spec.get("comparison"):
        raise ApiError(
            409, "a comparison's budget cannot change: every entry is tuned with the same one"
        )
    if trials > settings.max_trials:
        raise ApiError(422, f"budget.trials: at most {settings.max_trials} on this service")
    if trials < started:
        raise ApiError(
            422, f"budget.trials: {trials} is fewer than the {started} trials already started"
        )


@router.patch(
    "/{study_id}",
    dependencies=[WriteAccess],
    response_model=StudyOut,
    responses=problem_responses(403, 404, 409, 413),
    openapi_extra=UPDATE_BODY,
)
async def update(
    request: Request,
    study_id: str,
    store: StoreDep,
    supervisor: SupervisorDep,
    views: ViewsDep,
    settings: SettingsDep,
) -> StudyOut:
    """Change a queued or running study's trial budget (`{"budget": {"trials": 40}}`): its
    driver picks the new budget up while it runs. A change that arrives after the search's
    last trial finished comes too late: the study ends with the trials it ran."""
    change = _parse_update(await request.body())  # only now, after the token was checked

    def apply() -> StudyOut:
        record = _record(store, study_id)
        views.forget(study_id)
        t = views.study(record, _self_url(request, study_id)).trials
        started = t.running + t.completed + t.stopped_early + t.failed
        _check_budget(record, change.budget.trials, started, settings)
        with _write_errors(study_id):
            record = store.set_budget(study_id, change.budget.trials)
        supervisor.sync_budget(record)
        return views.study(record, _self_url(request, study_id))

    return await run_in_threadpool(apply)


@router.post(
    "/{study_id}/cancel", status_code=202, dependencies=[WriteAccess], responses=WRITE_ERRORS
)
def cancel(
    request: Request, study_id: str, store: StoreDep, supervisor: SupervisorDep, views: ViewsDep
) -> StudyOut:
    _existing_for_write(store, views, study_id)
    with _write_errors(study_id):
        supervisor.cancel(study_id)
    return views.study(_record(store, study_id), _self_url(request, study_id))


@router.post(
    "/{study_id}/resume", status_code=202, dependencies=[WriteAccess], responses=WRITE_ERRORS
)
def resume(
    request: Request, study_id: str, store: StoreDep, supervisor: SupervisorDep, views: ViewsDep
) -> StudyOut:
    _existing_for_write(store, views, study_id)
    with _write_errors(study_id, "; only failed or cancelled studies resume"):
        record = store.transition(study_id, StudyStatus.queued)
    supervisor.nudge()
    # as this transaction left it: a delete now is refused
    return views.study(record, _self_url(request, study_id))


@router.delete("/{study_id}", status_code=204, dependencies=[WriteAccess], responses=WRITE_ERRORS)
def delete(study_id: str, store: StoreDep, supervisor: SupervisorDep, views: ViewsDep) -> Response:
    """Delete a finished study and its folder (runs on an MLflow server stay)."""
    _existing_for_write(store, views, study_id)
    with _write_errors(study_id):
        store.delete(study_id)
    supervisor.remove_study_dir(study_id)
    return Response(status_code=204)
