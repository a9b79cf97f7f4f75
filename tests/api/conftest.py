"""The real app under uvicorn on loopback, as a separate process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

VENV_BIN = Path(sys.executable).parent
RW = {"Authorization": "Bearer rw-token"}
RO = {"Authorization": "Bearer ro-token"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Api:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("PCD_", "RAY_"))},
            "PCD_DATABASE_URL": f"sqlite:///{root / 'pcd.db'}",
            "PCD_API_TOKENS": "rw-token:rw,ro-token:ro",
            "PCD_STUDIES_DIR": str(root / "studies"),
            "PCD_DATA_ROOT": str(root / "data"),
            "PCD_TEACHER_ROOT": str(root / "teachers"),
            "PCD_LOCAL_CPUS": "2",
            # a warm driver costs each API start seconds of imports; test_api_lifecycle has one
            "PCD_WARM_DRIVER": "false",
            "RAY_USAGE_STATS_ENABLED": "0",
        }
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = (self.root / "api.log").open("ab")
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "pcd"), "serve", "--port", str(self.port), "--log-level", "warning"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError((self.root / "api.log").read_text()[-2000:])

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)

    def client(self, headers=RW) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@pytest.fixture
def api(tmp_path):
    server = Api(tmp_path)
    server.start()
    yield server
    server.stop()
    # drivers run in their own sessions: stop any left
    import psutil

    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "service.runner.launch" in cmd and str(tmp_path) in cmd:
            p.kill()


@pytest.fixture
def mlflow_server(tmp_path):
    """A real MLflow tracking server (one worker) on loopback."""
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = (tmp_path / "mlflow.log").open("ab")
    proc = subprocess.Popen(
        [
            str(VENV_BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'mlflow-server.db'}",
            "--artifacts-destination",
            str(tmp_path / "mlflow-artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    else:
        raise RuntimeError((tmp_path / "mlflow.log").read_text()[-2000:])
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


@pytest.fixture
def postgres_url():
    """A private schema in the real Postgres, dropped afterwards."""
    import uuid

    from sqlalchemy import create_engine, text

    base = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    schema = f"pcd_api_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f"create schema {schema}"))
    yield f"{base}?options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f"drop schema {schema} cascade"))
    admin.dispose()


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

    from service.api.app import create_app

    app = create_app(app_settings, supervise=False)
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
