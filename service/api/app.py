"""The FastAPI application: studies over REST.

Data flows one way: routes validate and write the store; the supervisor (the control plane)
starts drivers from the store and reconciles it with reality; pcd_core never sees the
service. This module only assembles the app: its state, middleware, error handlers, routers
and lifespan.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service.api.docs import add_offline_docs
from service.api.errors import add_problem_handlers
from service.api.limits import LimitsAndMetrics
from service.api.metrics import Metrics
from service.api.openapi import add_study_schemas
from service.api.routes import health, json_schemas, search_spaces, studies
from service.api.validation import SpecValidator
from service.api.views import StudyViews
from service.control.supervisor import Supervisor
from service.mlflow_reads import bound_reads
from service.settings import Settings
from service.store import Store, migrate

SupervisorFactory = Callable[[Store, Settings], Supervisor]


def create_app(
    settings: Settings | None = None, *, make_supervisor: SupervisorFactory = Supervisor
) -> FastAPI:
    """The app for ``settings`` (default: from the environment). Its lifespan migrates the
    study store and runs the supervisor that ``make_supervisor`` builds (tests pass one that
    launches nothing)."""
    settings = settings or Settings()
    tokens = settings.tokens()  # token -> scope; a malformed entry fails here
    bound_reads(settings.mlflow_read_timeout_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        migrate(settings.database_url)
        store = Store(settings.database_url)
        supervisor = make_supervisor(store, settings)
        app.state.store, app.state.supervisor = store, supervisor
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
        swagger_ui_parameters={"persistAuthorization": True},  # /docs keeps the token on reload
        docs_url=None,  # FastAPI's pages load their assets from a CDN: add_offline_docs's don't
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.tokens = tokens
    app.state.views = StudyViews(settings)
    app.state.spec_validator = SpecValidator(settings)
    app.state.metrics = metrics = Metrics()
    app.add_middleware(
        LimitsAndMetrics,
        max_body=settings.max_body_bytes,
        latency=metrics.latency,
        requests_total=metrics.requests_total,
    )
    add_problem_handlers(app)
    for router in (health.router, search_spaces.router, studies.router, json_schemas.router):
        app.include_router(router)
    add_study_schemas(app)
    add_offline_docs(app)
    return app
