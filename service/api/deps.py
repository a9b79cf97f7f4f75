"""What routes depend on: the app's settings, study store, supervisor and views, and the
bearer-token checks; each as a typed ``Annotated`` dependency read from ``app.state``
(``create_app`` puts them there)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.api.errors import ApiError
from service.api.validation import SpecValidator
from service.api.views import StudyViews
from service.control.supervisor import Supervisor
from service.settings import Settings
from service.store import Store

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


# async: FastAPI runs a sync dependency in a worker thread, a hop each for an attribute read
async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_store(request: Request) -> Store:
    return request.app.state.store


async def get_supervisor(request: Request) -> Supervisor:
    return request.app.state.supervisor


async def get_views(request: Request) -> StudyViews:
    return request.app.state.views


async def get_spec_validator(request: Request) -> SpecValidator:
    return request.app.state.spec_validator


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[Store, Depends(get_store)]
SupervisorDep = Annotated[Supervisor, Depends(get_supervisor)]
ViewsDep = Annotated[StudyViews, Depends(get_views)]
SpecValidatorDep = Annotated[SpecValidator, Depends(get_spec_validator)]


# Declared as OpenAPI's bearer scheme so that /docs can authorize; auto_error=False: its own
# 403 for a missing header would replace our 401 problem with its WWW-Authenticate challenge
BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="BearerToken",
    description="a token from PCD_API_TOKENS: read-write (`rw`) or read-only (`ro`)",
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)]


def _scope_of(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str:
    """The scope ("rw" or "ro") of the request's bearer token; 401 without a known one.
    Headers only: the body is not read here."""
    if credentials is None:
        raise ApiError(401, "send Authorization: Bearer <token>", _CHALLENGE)
    scope = request.app.state.tokens.get(credentials.credentials.strip())
    if scope is None:
        raise ApiError(401, "unknown token", _CHALLENGE)
    return scope


async def require_read(request: Request, credentials: Credentials) -> str:
    """Any known token reads."""
    return _scope_of(request, credentials)


async def require_write(request: Request, credentials: Credentials) -> str:
    """Only a read-write token writes (403 for a read-only one)."""
    scope = _scope_of(request, credentials)
    if scope != "rw":
        raise ApiError(403, "this token is read-only; writes need a read-write token")
    return scope


ReadAccess = Depends(require_read)
WriteAccess = Depends(require_write)
