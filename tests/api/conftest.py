"""The app in this process (``inproc``, ``asgi_client``: most tests), or the real one under
uvicorn on loopback as a separate process (``api``: what needs a server, drivers or a
restart)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from pcd_testing.processes import VENV_BIN, free_port, stop
from pcd_testing.servers import RO, RW, Api, drivers, postgres_schema, start_mlflow, stop_group

__all__ = ["RO", "RW", "VENV_BIN", "Api", "free_port"]  # what the tests here import


@pytest.fixture
def api(tmp_path):
    server = Api(tmp_path)
    server.start()
    yield server
    server.stop()
    # drivers run in their own sessions: stop any left
    stop(drivers(str(tmp_path)))


@pytest.fixture
def mlflow_server(tmp_path):
    """A real MLflow tracking server (one worker) on loopback."""
    proc, url = start_mlflow(tmp_path)
    yield url
    stop_group(proc)


@pytest.fixture
def postgres_url():
    """A private schema in the real Postgres, dropped afterwards."""
    with postgres_schema() as url:
        yield url


# ------------------------------------------------------------------ the app in process
@pytest.fixture
def app_settings(tmp_path):
    from service.settings import Settings

    return Settings(
        database_url=f"sqlite:///{tmp_path / 'pcd.db'}",
        api_tokens="rw-token:rw,ro-token:ro",
        studies_dir=tmp_path / "studies",
        data_root=tmp_path / "data",
        teacher_root=tmp_path / "teachers",
        warm_driver=False,
    )


@pytest.fixture
def inproc(app_settings):
    """The app in this process (no supervisor: nothing is launched), lifespan run."""
    from fastapi.testclient import TestClient
    from pcd_testing.app import app_without_drivers

    app = app_without_drivers(app_settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@asynccontextmanager
async def asgi_client(app) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on the app's ASGI interface (request bodies are sent only as the app
    reads them), with the app's lifespan run."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client
