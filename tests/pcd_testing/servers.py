"""The service's processes for tests: the API (``pcd serve``), an MLflow tracking server, a
private Postgres schema, and a Ray cluster on loopback; every one stopped by PID."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil

from service.control.processes import start_session, stop_session
from service.demo import mlflow_server_args

from .processes import VENV_BIN, alive, free_port, matching, stop, tree, wait_http

RW = {"Authorization": "Bearer rw-token"}
RO = {"Authorization": "Bearer ro-token"}
POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


class Api:
    """``pcd serve`` on loopback (a SQLite store under ``root`` unless the env says other)."""

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
        self.started: list[int] = []  # every API process's PID

    def start(self) -> None:
        self.proc = start_session(
            [str(VENV_BIN / "pcd"), "serve", "--port", str(self.port), "--log-level", "warning"],
            self.env,
            self.root / "api.log",
        )
        self.started.append(self.proc.pid)
        if not wait_http(f"{self.url}/healthz", 90, self.proc):
            self.stop()
            raise RuntimeError((self.root / "api.log").read_text()[-2000:])

    def stop(self) -> None:
        stop_session(self.proc)

    def kill(self) -> None:
        """kill -9 of the API process alone (its drivers live in sessions of their own)."""
        assert self.proc is not None and self.proc.poll() is None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def client(self, headers=RW) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


def drivers(marker: str) -> list[psutil.Process]:
    """Live study drivers whose command line names ``marker`` (a study id or folder)."""
    # the command line read once, by matching: a driver that has just exited is a zombie here
    # (nothing reaps it), and asking for its command line again would raise
    launchers = matching("service.runner.launch")
    return [p for p in launchers if any(marker in part for part in p.info["cmdline"] or [])]


def start_mlflow(root: Path, backend: str | None = None) -> tuple[subprocess.Popen, str]:
    """A real MLflow tracking server (one worker) on loopback; its store under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = start_session(mlflow_server_args(root, port, backend), env, root / "mlflow.log")
    url = f"http://127.0.0.1:{port}"
    if not wait_http(f"{url}/health", 120, proc):
        stop_group(proc)
        raise RuntimeError((root / "mlflow.log").read_text()[-2000:])
    return proc, url


def stop_group(proc: subprocess.Popen, timeout: float = 30) -> None:
    """Stop a process started in a session of its own, and everything below it."""
    procs = tree([proc.pid])
    stop_session(proc, timeout)
    stop([p for p in procs if alive(p)], timeout=5)


@contextmanager
def postgres_schema(base: str = POSTGRES) -> Iterator[str]:
    """A private schema in the real Postgres (its URL), dropped afterwards."""
    from sqlalchemy import create_engine, text

    schema = f"pcd_t_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f"create schema {schema}"))
    try:
        yield f"{base}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"drop schema {schema} cascade"))
        admin.dispose()


class RayCluster:
    """A Ray cluster on loopback with token auth and private temp folders: a head on
    127.0.0.2 and worker nodes on 127.0.0.3, .4, ...; stop() ends every process it started."""

    def __init__(self, head_cpus: int = 1, worker_cpus: int = 1, workers: int = 1) -> None:
        # short: Ray's socket paths are limited
        self.base = Path(f"/tmp/pcd-ray-{secrets.token_hex(3)}")
        self.env = {
            **os.environ,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(32),
            "RAY_USAGE_STATS_ENABLED": "0",
        }
        self.port = free_port("127.0.0.2")
        self.address = f"127.0.0.2:{self.port}"
        self.worker_cpus = worker_cpus
        self.nodes: dict[str, Path] = {}
        self._ray(
            "--head",
            "--node-ip-address=127.0.0.2",
            f"--port={self.port}",
            "--include-dashboard=false",
            f"--num-cpus={head_cpus}",
            temp=self.base / "h",
        )
        self.nodes["127.0.0.2"] = self.base / "h"
        for i in range(workers):
            self.add_worker(f"127.0.0.{3 + i}")

    def _ray(self, *args: str, temp: Path) -> None:
        subprocess.run(
            [str(VENV_BIN / "ray"), "start", *args, f"--temp-dir={temp}", "--disable-usage-stats"],
            env=self.env,
            check=True,
            capture_output=True,
            timeout=120,
        )

    def add_worker(self, ip: str | None = None) -> str:
        """Start a worker node (on the next free loopback address); its address."""
        ip = ip or f"127.0.0.{max(int(n.rsplit('.', 1)[1]) for n in self.nodes) + 1}"
        temp = self.base / ip.rsplit(".", 1)[1]
        self._ray(
            f"--address={self.address}",
            f"--node-ip-address={ip}",
            f"--num-cpus={self.worker_cpus}",
            temp=temp,
        )
        self.nodes[ip] = temp
        return ip

    def node_processes(self, ip: str) -> list[psutil.Process]:
        """A node's processes: those naming its temp folder, and their descendants (Ray's
        agents and workers rename themselves)."""
        return tree(p.pid for p in matching(str(self.nodes[ip])))

    def kill_node(self, ip: str) -> int:
        """kill -9 of every process of one node (as when its machine dies); how many."""
        procs = self.node_processes(ip)
        for p in procs:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(procs, timeout=10)
        return len(procs)

    def processes(self) -> list[psutil.Process]:
        return tree(p.pid for p in matching(str(self.base)))

    def stop(self) -> None:
        stop(self.processes())
        shutil.rmtree(self.base, ignore_errors=True)
