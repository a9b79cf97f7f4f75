"""/readyz, the API's readiness probe: gated on the study store only; MLflow and Ray reported.

In process (FastAPI's TestClient runs the app's lifespan: migrations, store), without the
supervisor; MLflow and Ray are addresses where nothing answers, or an MLflow that says 503.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pcd_testing.app import app_without_drivers

from service.settings import Settings
from service.store import Store

from .conftest import free_port


def _settings(tmp_path: Path, **kw: str | None) -> Settings:
    return Settings(
        _env_file=None,
        database_url=f"sqlite:///{tmp_path / 'pcd.db'}",
        studies_dir=tmp_path / "studies",
        data_root=tmp_path / "data",
        teacher_root=tmp_path / "teachers",
        api_tokens="rw-token:rw",
        warm_driver=False,
        **kw,
    )


@pytest.fixture
def unhealthy_mlflow() -> Iterator[str]:
    """An HTTP server whose /health answers 503, as MLflow does while it cannot serve."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(503)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("mlflow", ["down", "unhealthy"])
def test_mlflow_and_ray_down_still_ready(tmp_path, mlflow, unhealthy_mlflow) -> None:
    uri = f"http://127.0.0.1:{free_port()}" if mlflow == "down" else unhealthy_mlflow
    settings = _settings(
        tmp_path, mlflow_tracking_uri=uri, ray_address=f"http://127.0.0.1:{free_port()}"
    )
    with TestClient(app_without_drivers(settings)) as client:
        response = client.get("/readyz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ready"] is True
    assert body["checks"]["database"] == "ok"
    expected = "unreachable" if mlflow == "down" else "unhealthy"
    assert body["checks"]["mlflow"].startswith(expected), body
    assert body["checks"]["ray"].startswith("unreachable"), body


def test_store_down_is_not_ready(tmp_path) -> None:
    with TestClient(app_without_drivers(_settings(tmp_path))) as client:
        assert client.get("/readyz").status_code == 200
        app = client.app
        healthy = app.state.store
        # the store's database server went away: nothing listens on its port
        app.state.store = Store(f"postgresql+psycopg://pcd@127.0.0.1:{free_port()}/pcd")
        try:
            response = client.get("/readyz")
        finally:
            app.state.store.engine.dispose()
            app.state.store = healthy
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["ready"] is False
    assert body["checks"]["database"].startswith("unreachable"), body
    # nothing else is wrong: MLflow and Ray are local, reported as such
    assert body["checks"]["mlflow"] == "local store (PCD_MLFLOW_LOCAL_DIR)"
    assert body["checks"]["ray"] == "local Ray per study"
