"""A real two-node Ray cluster on loopback (head 127.0.0.2, worker 127.0.0.3), token auth,
private temp folders; every process it started is stopped by PID at the end."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from pcd_testing.fixtures import ray_cluster
from pcd_testing.processes import VENV_BIN
from pcd_testing.processes import wait_for as _wait_for

__all__ = ["VENV_BIN", "cli_env", "ray_cluster", "run_cli", "wait_for"]


def cli_env(mlflow_store: Path | None = None) -> dict[str, str]:
    """The environment of a `pcd` command a test runs: this one's without its Ray and pcd
    settings (a local Ray, no service), and the local MLflow store in ``mlflow_store``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "PCD_"))}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    if mlflow_store is not None:
        env["PCD_MLFLOW_LOCAL_DIR"] = str(mlflow_store)
    return env


def run_cli(
    args: list[str], env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_BIN / "pcd"), *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def wait_for(predicate, timeout: float, interval: float = 0.5) -> bool:
    return bool(_wait_for(predicate, timeout, interval))
