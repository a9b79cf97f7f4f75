"""A real two-node Ray cluster on loopback (head 127.0.0.2, worker 127.0.0.3), token auth,
private temp folders; every process it started is stopped by PID at the end."""

from __future__ import annotations

import subprocess

from pcd_testing.fixtures import ray_cluster
from pcd_testing.processes import VENV_BIN
from pcd_testing.processes import wait_for as _wait_for

__all__ = ["VENV_BIN", "ray_cluster", "run_cli", "wait_for"]


def run_cli(
    args: list[str], env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_BIN / "pcd"), *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def wait_for(predicate, timeout: float, interval: float = 0.5) -> bool:
    return bool(_wait_for(predicate, timeout, interval))
