"""Errors as RFC 9457 problem details (``application/problem+json``)."""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.api.schemas import PROBLEM_MEDIA_TYPE, Problem

log = logging.getLogger(__name__)

TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Payload Too Large",
    422: "Unprocessable Content",
    503: "Service Unavailable",
}


def problem(
    status: int, title: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        Problem(title=title, status=status, detail=detail).model_dump(),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


class ApiError(HTTPException):
    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None):
        super().__init__(status_code=status, detail=detail, headers=headers)


class BodyTooLarge(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request bodies are limited to {limit} bytes")


# What a database that is down, restarting or unreachable raises (not: bad statements or data)
DATABASE_OUTAGES: tuple[type[Exception], ...] = (
    exc.OperationalError,
    exc.InterfaceError,
    exc.DisconnectionError,
    exc.TimeoutError,
)
RETRY_AFTER_S = 5


async def database_unavailable(request: Request, err: Exception) -> JSONResponse:
    log.warning("%s %s: study database unavailable: %s", request.method, request.url.path, err)
    return problem(
        503,
        TITLES[503],
        "the study database is unreachable; retry later",
        {"Retry-After": str(RETRY_AFTER_S)},
    )


async def _http_error(request: Request, err: Exception) -> JSONResponse:
    """FastAPI's and Starlette's own errors (404, 405) and every ApiError."""
    assert isinstance(err, StarletteHTTPException)
    title = TITLES.get(err.status_code, "Error")
    return problem(err.status_code, title, str(err.detail), getattr(err, "headers", None))


async def _invalid_request(request: Request, err: Exception) -> JSONResponse:
    """A request FastAPI could not validate, its errors named by field."""
    assert isinstance(err, RequestValidationError)
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
        parts.append(f"{loc}: {e.get('msg')}" if loc else str(e.get("msg")))
    return problem(422, TITLES[422], "; ".join(parts) or "invalid request")


async def _unexpected(request: Request, err: Exception) -> JSONResponse:
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=err)
    return problem(500, "Internal Server Error", "unexpected error; see the service log")


def add_problem_handlers(app: FastAPI) -> None:
    """Every error the app answers as problem details."""
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    for outage in DATABASE_OUTAGES:
        app.add_exception_handler(outage, database_unavailable)
    app.add_exception_handler(Exception, _unexpected)


# an absolute path of two or more parts not inside a URL (http://host/a/b stays)
_ABSOLUTE_PATH = re.compile(r"(?<![\w:/.<>-])/(?:[\w.\-]+/)+[\w.\-]*")
INSTALL_DIR = Path(__file__).resolve().parents[2]


def redact_paths(text: str | None, named: dict[str, Path]) -> str | None:
    """``text`` without the server's paths: the folders in ``named`` (and the install and
    Python folders) by their names, any other absolute path as ``<path>``."""
    if not text:
        return text
    places = {**named, "<pcd>": INSTALL_DIR, "<python>": Path(sys.prefix)}
    # longest first: a folder inside another is named by its own name
    for name, folder in sorted(places.items(), key=lambda kv: -len(str(kv[1]))):
        for variant in {str(folder), str(folder.resolve())}:
            if len(variant) > 1:
                text = text.replace(variant, name)
    return _ABSOLUTE_PATH.sub("<path>", text)
