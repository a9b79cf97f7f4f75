"""Liveness, readiness and metrics: open, without a token."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from service.api import read_model
from service.api.deps import SettingsDep, StoreDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(settings: SettingsDep, store: StoreDep) -> JSONResponse:
    checks = read_model.readiness(settings, store)
    # Gated on the study store only: without it no route can answer. MLflow and Ray are
    # reported in `checks` but do not make it 503, so that a restarting MLflow or Ray head
    # does not take the whole API (study status, cancel) out of its Service.
    ok = checks["database"] == "ok"
    return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)


@router.get("/metrics", response_class=PlainTextResponse)  # documented as the text it is
def metrics(request: Request, store: StoreDep) -> Response:
    exposition = request.app.state.metrics.exposition(store)
    return Response(exposition, media_type=CONTENT_TYPE_LATEST)
