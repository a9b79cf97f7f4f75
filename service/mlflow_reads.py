"""The API's MLflow reads are bounded: a short timeout and no retries (MLflow's own
MLFLOW_HTTP_REQUEST_TIMEOUT / MLFLOW_HTTP_REQUEST_MAX_RETRIES, which its REST client reads at
each call), so that an MLflow outage cannot hold request threads for a minute. They are set
for the API process only: drivers it starts get the environment as it was."""

from __future__ import annotations

import os

TIMEOUT = "MLFLOW_HTTP_REQUEST_TIMEOUT"
RETRIES = "MLFLOW_HTTP_REQUEST_MAX_RETRIES"
_before: dict[str, str | None] = {}


def bound_reads(timeout_s: float) -> None:
    """Bound this process's MLflow requests to ``timeout_s`` seconds, without retries."""
    for key, value in {TIMEOUT: str(max(1, round(timeout_s))), RETRIES: "0"}.items():
        _before.setdefault(key, os.environ.get(key))
        os.environ[key] = value


def without_read_bounds(env: dict[str, str]) -> dict[str, str]:
    """``env`` with the MLflow settings as they were before bound_reads (for drivers)."""
    out = dict(env)
    for key, value in _before.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out
