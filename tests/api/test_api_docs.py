"""/docs and /redoc load every asset from the app itself (air-gapped clusters reach no CDN),
under the root path a proxy serves the app at."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient
from pcd_testing.app import app_without_drivers

# an asset's media type, and a floor on its size that an empty or stub file misses
ASSETS = {
    "swagger-ui-bundle.js": ("text/javascript", 500_000),
    "swagger-ui.css": ("text/css", 50_000),
    "favicon.png": ("image/png", 500),
    "redoc.standalone.js": ("text/javascript", 500_000),
}


class _Links(HTMLParser):
    """The URLs a page loads: script src and link href."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href"}.get(tag)
        self.urls += [value for name, value in attrs if name == wanted and value]


def _loaded_urls(client: TestClient, page: str) -> tuple[str, list[str]]:
    response = client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    parser = _Links()
    parser.feed(response.text)
    return response.text, parser.urls


def _check_local_assets(client: TestClient, html: str, urls: list[str], prefix: str) -> None:
    assert "cdn.jsdelivr" not in html and "googleapis" not in html
    assert urls
    for url in urls:
        assert "://" not in url and url.startswith(f"{prefix}/static/docs/"), url
        name = url.rsplit("/", 1)[1]
        media_type, min_size = ASSETS[name]
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert asset.headers["content-type"].split(";")[0] == media_type, url
        assert len(asset.content) >= min_size, url


def test_docs_loads_swagger_ui_from_the_app(inproc) -> None:
    html, urls = _loaded_urls(inproc, "/docs")
    assert sorted(url.rsplit("/", 1)[1] for url in urls) == [
        "favicon.png",
        "swagger-ui-bundle.js",
        "swagger-ui.css",
    ]
    _check_local_assets(inproc, html, urls, "")
    assert "url: '/openapi.json'" in html
    assert '"persistAuthorization": true' in html  # the token survives a reload


def test_the_oauth2_redirect_page_is_served(inproc) -> None:
    html, urls = _loaded_urls(inproc, "/docs/oauth2-redirect")
    assert urls == [] and "oauth2" in html.lower()


def test_redoc_loads_its_bundle_from_the_app(inproc) -> None:
    html, urls = _loaded_urls(inproc, "/redoc")
    assert sorted(url.rsplit("/", 1)[1] for url in urls) == ["favicon.png", "redoc.standalone.js"]
    _check_local_assets(inproc, html, urls, "")
    assert '<redoc spec-url="/openapi.json">' in html


def test_swagger_ui_renders_openapi_3_1(inproc) -> None:
    """Swagger UI 4 refuses an OpenAPI 3.1 document (FastAPI writes 3.1): the bundle is 5."""
    assert inproc.get("/openapi.json").json()["openapi"].startswith("3.1.")
    bundle = inproc.get("/static/docs/swagger-ui-bundle.js").text
    assert 'PACKAGE_VERSION:"5.' in bundle


def test_a_missing_asset_is_a_problem(inproc) -> None:
    response = inproc.get("/static/docs/nothing.js")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_pages_follow_the_root_path(app_settings, page: str) -> None:
    """Behind a proxy at /pcd (uvicorn --root-path /pcd) every URL the browser loads is
    under /pcd, the OpenAPI document included."""
    app = app_without_drivers(app_settings)
    with TestClient(app, root_path="/pcd", raise_server_exceptions=False) as client:
        html, urls = _loaded_urls(client, page)
        _check_local_assets(client, html, urls, "/pcd")
    assert "/pcd/openapi.json" in html
    if page == "/docs":
        assert "'/pcd/docs/oauth2-redirect'" in html
