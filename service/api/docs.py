"""/docs (Swagger UI) and /redoc served with their assets from the app itself.

FastAPI's own pages load Swagger UI and ReDoc from a public CDN, which air-gapped clusters
and the Compose deployment cannot reach (the page stays blank). The assets come from the
pinned ``fastapi-offline`` package (Swagger UI 5, which renders OpenAPI 3.1, ReDoc 2 and
a favicon), mounted under STATIC_URL; only its files are used, not its app factory.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
STATIC_URL = "/static/docs"
ASSETS = Path(fastapi_offline.__file__).parent / "static"  # its package data


def _root(request: Request) -> str:
    """The prefix a proxy serves the app under (uvicorn's --root-path), as FastAPI's own
    pages prepend it: the browser resolves these URLs, not the app."""
    return request.scope.get("root_path", "").rstrip("/")


def add_offline_docs(app: FastAPI) -> None:
    """Serve /docs, its OAuth2 redirect page and /redoc from local assets. ``app`` must have
    been built with ``docs_url=None, redoc_url=None`` (no CDN pages of FastAPI's own)."""
    assert app.openapi_url and app.swagger_ui_oauth2_redirect_url
    openapi_url, redirect_url = app.openapi_url, app.swagger_ui_oauth2_redirect_url
    app.mount(STATIC_URL, StaticFiles(directory=ASSETS), name="docs-assets")

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = _root(request)
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=root + redirect_url,
            init_oauth=app.swagger_ui_init_oauth,
            swagger_js_url=f"{root}{STATIC_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{STATIC_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{STATIC_URL}/favicon.png",
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    async def swagger_ui_redirect(request: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc(request: Request) -> HTMLResponse:
        root = _root(request)
        return get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{STATIC_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{STATIC_URL}/favicon.png",
            with_google_fonts=False,  # fonts.googleapis.com is as unreachable as the CDN
        )

    app.add_route(DOCS_URL, swagger_ui, include_in_schema=False)
    app.add_route(redirect_url, swagger_ui_redirect, include_in_schema=False)
    app.add_route(REDOC_URL, redoc, include_in_schema=False)
