"""The FastAPI application: studies over REST.

Data flows one way: routes validate and write the store; the supervisor (runner side) starts
drivers from the store and reconciles it with reality; pcd_core never sees the service.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from search_spaces import builtin_names, load_spec
from service.api import read_model
from service.api.errors import (
    DATABASE_OUTAGES,
    TITLES,
    ApiError,
    database_unavailable,
    problem,
    redact_paths,
)
from service.api.limits import LimitsAndMetrics
from service.api.schemas import (
    Links,
    SearchSpaceOut,
    StudyOut,
    StudyPage,
    TrialOut,
    TrialPage,
    ValidationOut,
)
from service.api.validation import SpecValidator
from service.control.supervisor import Supervisor
from service.mlflow_reads import bound_reads
from service.settings import Settings
from service.store import InvalidTransition, Store, StudyRecord, StudyStatus, migrate
from service.store.db import IdempotencyConflict

JSON = "application/json"
VIEW_TTL_S = 1.0
# POST /v1/studies reads its body itself (after authentication), so it is documented here
SPEC_BODY = {
    "requestBody": {
        "required": True,
        "description": "a study spec, or {search_space: NAME, overrides: {dotted.key: value}}",
        "content": {
            JSON: {
                "schema": {"type": "object", "additionalProperties": True},
                "example": {"search_space": "pcd-digits", "overrides": {"budget.trials": 4}},
            }
        },
    }
}
log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, supervise: bool = True) -> FastAPI:
    settings = settings or Settings()
    tokens = settings.tokens()
    bound_reads(settings.mlflow_read_timeout_s)
    registry = CollectorRegistry()
    requests_total = Counter(
        "pcd_http_requests_total",
        "HTTP requests",
        ["method", "route", "status"],
        registry=registry,
    )
    latency = Histogram(
        "pcd_http_request_seconds", "HTTP request latency", ["route"], registry=registry
    )
    studies_gauge = Gauge("pcd_studies", "studies by status", ["status"], registry=registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        migrate(settings.database_url)
        store = Store(settings.database_url)
        supervisor = Supervisor(store, settings)
        app.state.store, app.state.supervisor = store, supervisor
        if supervise:
            supervisor.reconcile()
            supervisor.start()
        yield
        supervisor.shutdown()
        store.engine.dispose()

    app = FastAPI(
        title="pcd",
        version="0.1.0",
        description="Distillation studies: submit, follow, compare in MLflow.",
        lifespan=lifespan,
    )

    # ------------------------------------------------------------- plumbing
    app.add_middleware(
        LimitsAndMetrics,
        max_body=settings.max_body_bytes,
        latency=latency,
        requests_total=requests_total,
    )

    @app.exception_handler(StarletteHTTPException)  # FastAPI's and Starlette's own 404/405
    async def http_error(request: Request, exc: StarletteHTTPException):
        return problem(
            exc.status_code,
            TITLES.get(exc.status_code, "Error"),
            str(exc.detail),
            getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        parts = []
        for e in exc.errors():
            loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
            parts.append(f"{loc}: {e.get('msg')}" if loc else str(e.get("msg")))
        return problem(422, "Unprocessable Content", "; ".join(parts) or "invalid request")

    for outage in DATABASE_OUTAGES:
        app.add_exception_handler(outage, database_unavailable)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return problem(500, "Internal Server Error", "unexpected error; see the service log")

    def store(request: Request) -> Store:
        return request.app.state.store

    def supervisor(request: Request) -> Supervisor:
        return request.app.state.supervisor

    def require(scope: str) -> Callable:
        async def check(authorization: Annotated[str | None, Header()] = None) -> str:
            challenge = {"WWW-Authenticate": "Bearer"}
            if not authorization or not authorization.lower().startswith("bearer "):
                raise ApiError(401, "send Authorization: Bearer <token>", challenge)
            token = authorization[7:].strip()
            granted = tokens.get(token)
            if granted is None:
                raise ApiError(401, "unknown token", challenge)
            if scope == "rw" and granted != "rw":
                raise ApiError(403, "this token is read-only; writes need a read-write token")
            return granted

        return check

    read, write = Depends(require("ro")), Depends(require("rw"))
    validate_spec = SpecValidator(settings)

    # ------------------------------------------------------------- helpers
    progress_cache: dict[str, tuple[float, str, Any]] = {}

    def progress(record: StudyRecord) -> tuple[Any, bool]:
        """A study's progress from MLflow, re-read at most every 2 s while it runs and once
        after it finished (the hot path of GET /v1/studies/{id}); and whether it is the last
        known progress because MLflow did not answer."""
        key = f"{record.status}:{record.updated_at}"
        cached = progress_cache.get(record.id)
        finished = record.status in ("succeeded", "failed", "cancelled")
        if (
            cached is not None
            and cached[1] == key
            and (finished or time.monotonic() - cached[0] < 2.0)
        ):
            return cached[2], False
        try:
            value = read_model.progress(settings, record)
        except read_model.TrackingUnavailable:  # the last known state, said to be such
            return (cached[2] if cached else read_model.progress(settings, record, runs=[])), True
        progress_cache[record.id] = (time.monotonic(), key, value)
        return value, False

    server_paths = {
        "<studies>": settings.studies_dir,
        "<data root>": settings.data_root,
        "<teacher root>": settings.teacher_root,
    }

    def public(text: str | None) -> str | None:
        return redact_paths(text, server_paths)

    def study_out(request: Request, record: StudyRecord) -> StudyOut:
        base = str(request.url_for("get_study", study_id=record.id))
        (counters, best, promotion, mlflow_url), stale = progress(record)
        return StudyOut(
            id=record.id,
            name=record.name,
            status=record.status,
            error=public(record.error),
            attempts=record.attempts,
            created_at=record.created_at,
            updated_at=record.updated_at,
            started_at=record.started_at,
            finished_at=record.finished_at,
            trials=counters,
            best=best,
            promotion=promotion,
            stale=stale,
            links=Links(self=base, trials=f"{base}/trials", mlflow=mlflow_url),
        )

    # Rendered study views, at most VIEW_TTL_S old: watchers poll a few studies hard, and a
    # view costs a store read, a progress lookup and a serialisation. Writes through this
    # process (cancel, resume, delete) drop the study's views at once.
    views: dict[tuple[str, str], tuple[float, bytes]] = {}

    def forget(study_id: str) -> None:
        for key in [k for k in views if k[0] == study_id]:
            views.pop(key, None)

    def existing_for_write(request: Request, study_id: str) -> None:
        """404 for an unknown study; else drop its cached views before the write."""
        get_record(store(request), study_id)
        forget(study_id)

    def get_record(st: Store, study_id: str) -> StudyRecord:
        record = st.get(study_id)
        if record is None:
            raise ApiError(404, f"no study {study_id!r}")
        return record

    trials_cache: dict[str, list[TrialOut]] = {}

    def known_trials(record: StudyRecord) -> tuple[list[TrialOut], bool]:
        """A study's trials, or the last known ones (and True) when MLflow does not answer."""
        try:
            trials = [
                t.model_copy(update={"error": public(t.error)})
                for t in read_model.trials(settings, record)
            ]
        except read_model.TrackingUnavailable:
            return trials_cache.get(record.id, []), True
        if len(trials_cache) > 1024:
            trials_cache.clear()
        trials_cache[record.id] = trials
        return trials, False

    # ------------------------------------------------------------- routes
    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    def readyz(request: Request) -> JSONResponse:
        checks = read_model.readiness(settings, request.app.state.store)
        # Gated on the study store only: without it no route can answer. MLflow and Ray are
        # reported in `checks` but do not make it 503, so that a restarting MLflow or Ray head
        # does not take the whole API (study status, cancel) out of its Service.
        ok = checks["database"] == "ok"
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["health"])
    def metrics(request: Request) -> Response:
        for status in StudyStatus:
            studies_gauge.labels(status.value).set(0)
        for status, n in request.app.state.store.counts().items():
            studies_gauge.labels(status).set(n)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/search-spaces", tags=["search spaces"], dependencies=[read])
    def list_spaces() -> list[SearchSpaceOut]:
        out = []
        for name in builtin_names():
            spec = load_spec(name)
            out.append(
                SearchSpaceOut(
                    name=name,
                    method=spec.method,
                    student=spec.student,
                    description=spec.description,
                )
            )
        return out

    @app.get("/v1/search-spaces/{name}", tags=["search spaces"], dependencies=[read])
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

    @app.post(
        "/v1/studies",
        tags=["studies"],
        status_code=201,
        dependencies=[write],
        response_model=StudyOut | ValidationOut,
        openapi_extra=SPEC_BODY,
    )
    async def submit(
        request: Request,
        response: Response,
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
                record, created = store(request).create(
                    spec.name, spec_json, idempotency_key=idempotency_key
                )
            except IdempotencyConflict as err:
                raise ApiError(409, str(err)) from None
            return record, created, study_out(request, record)

        record, created, out = await run_in_threadpool(create)
        if created:
            supervisor(request).nudge()
        response.status_code = 201 if created else 200
        response.headers["Location"] = str(request.url_for("get_study", study_id=record.id))
        return out

    @app.get("/v1/studies", tags=["studies"], dependencies=[read])
    def list_studies(
        request: Request,
        status: StudyStatus | None = None,
        offset: int = Query(0, ge=0, le=1_000_000),
        limit: int = Query(50, ge=1, le=500),
    ) -> StudyPage:
        records, total = store(request).list(status=status, offset=offset, limit=limit)
        return StudyPage(
            items=[study_out(request, r) for r in records], total=total, offset=offset, limit=limit
        )

    @app.get(
        "/v1/studies/{study_id}", tags=["studies"], dependencies=[read], response_model=StudyOut
    )
    async def get_study(request: Request, study_id: str) -> Response:
        """A study's status and progress (a view at most 1 s old)."""
        key = (study_id, str(request.base_url))
        hit = views.get(key)
        now = time.monotonic()
        if hit is None or now - hit[0] >= VIEW_TTL_S:

            def render() -> bytes:
                record = get_record(store(request), study_id)
                return study_out(request, record).model_dump_json().encode()

            hit = (now, await run_in_threadpool(render))
            if len(views) > 4096:
                views.clear()
            views[key] = hit
        return Response(hit[1], media_type=JSON, headers={"Cache-Control": "max-age=1"})

    @app.get("/v1/studies/{study_id}/trials", tags=["studies"], dependencies=[read])
    def get_trials(
        request: Request,
        study_id: str,
        offset: int = Query(0, ge=0, le=1_000_000),
        limit: int = Query(50, ge=1, le=500),
    ) -> TrialPage:
        record = get_record(store(request), study_id)
        trials, stale = known_trials(record)
        return TrialPage(
            items=trials[offset : offset + limit],
            total=len(trials),
            offset=offset,
            limit=limit,
            stale=stale,
        )

    @app.post(
        "/v1/studies/{study_id}/cancel", tags=["studies"], status_code=202, dependencies=[write]
    )
    def cancel(request: Request, study_id: str) -> StudyOut:
        existing_for_write(request, study_id)
        with write_errors(study_id):
            supervisor(request).cancel(study_id)
        return study_out(request, get_record(store(request), study_id))

    @app.post(
        "/v1/studies/{study_id}/resume", tags=["studies"], status_code=202, dependencies=[write]
    )
    def resume(request: Request, study_id: str) -> StudyOut:
        existing_for_write(request, study_id)
        with write_errors(study_id, "; only failed or cancelled studies resume"):
            record = store(request).transition(study_id, StudyStatus.queued)
        supervisor(request).nudge()
        return study_out(request, record)  # as this transaction left it: a delete now is refused

    @app.delete("/v1/studies/{study_id}", tags=["studies"], status_code=204, dependencies=[write])
    def delete(request: Request, study_id: str) -> Response:
        """Delete a finished study and its folder (runs on an MLflow server stay)."""
        existing_for_write(request, study_id)
        with write_errors(study_id):
            store(request).delete(study_id)
        supervisor(request).remove_study_dir(study_id)
        return Response(status_code=204)

    return app


@contextmanager
def write_errors(study_id: str, hint: str = "") -> Iterator[None]:
    """A write's store errors as answers: a study deleted meanwhile is 404 (never 202), a
    status that does not allow the write 409."""
    try:
        yield
    except KeyError:
        raise ApiError(404, f"no study {study_id!r}") from None
    except InvalidTransition as err:
        raise ApiError(409, f"{err}{hint}") from None
