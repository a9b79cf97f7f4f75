"""A real two-node Ray cluster on loopback (head 127.0.0.2, worker 127.0.0.3), token auth,
private temp folders; every process it started is stopped by PID at the end."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

VENV_BIN = Path(sys.executable).parent


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _ours(marker: str) -> list[psutil.Process]:
    procs = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(marker in part for part in (p.info["cmdline"] or [])):
                procs.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return procs


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """Address and environment of a running two-node cluster."""
    base = Path(f"/tmp/pcd-ray-{secrets.token_hex(3)}")  # short: Ray's socket paths are limited
    head_dir, worker_dir = base / "h", base / "w"
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    port = _free_port("127.0.0.2")
    address = f"127.0.0.2:{port}"
    ray = str(VENV_BIN / "ray")
    common = ["--num-cpus=1", "--disable-usage-stats"]
    subprocess.run(
        [
            ray,
            "start",
            "--head",
            "--node-ip-address=127.0.0.2",
            f"--port={port}",
            "--include-dashboard=false",
            f"--temp-dir={head_dir}",
            *common,
        ],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    subprocess.run(
        [
            ray,
            "start",
            f"--address={address}",
            "--node-ip-address=127.0.0.3",
            f"--temp-dir={worker_dir}",
            *common,
        ],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    try:
        yield {"address": address, "env": env}
    finally:
        procs = _ours(str(base))
        # Ray's agents rename themselves (ray::DashboardAgent): found as children, not by name
        for p in list(procs):
            try:
                procs += [c for c in p.children(recursive=True) if c not in procs]
            except psutil.NoSuchProcess:
                continue
        for p in procs:
            p.terminate()
        _, alive = psutil.wait_procs(procs, timeout=10)
        for p in alive:
            p.kill()
        shutil.rmtree(base, ignore_errors=True)


def run_cli(
    args: list[str], env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_BIN / "pcd"), *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def wait_for(predicate, timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False
