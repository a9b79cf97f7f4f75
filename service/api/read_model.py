"""A study's read model: its state, progress, trials and the service's readiness, read
from the study folder and the study's MLflow runs. Read-only: nothing here writes.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
from sqlalchemy import text

from service.api.schemas import BestTrial, TrialCounters, TrialOut
from service.settings import Settings
from service.store import Store, StudyRecord

log = logging.getLogger(__name__)


def _study_state(record: StudyRecord) -> dict[str, Any]:
    if not record.study_dir:
        return {}
    path = Path(record.study_dir) / "study.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def _tracking_uri(settings: Settings, record: StudyRecord) -> str | None:
    if settings.mlflow_tracking_uri:
        return settings.mlflow_tracking_uri
    if record.study_dir and (Path(record.study_dir) / "mlflow.db").is_file():
        return f"sqlite:///{Path(record.study_dir) / 'mlflow.db'}"
    return None


def _client(settings: Settings, record: StudyRecord, state: dict[str, Any]) -> Any:
    """An MLflow client for the study's tracking store, once the driver has made its parent
    run (``state`` is the study's study.json). Not before: opening a SQLite store that the
    driver is still creating would run MLflow's migrations from here too, and the two clash."""
    uri = _tracking_uri(settings, record)
    if not uri or "parent_run_id" not in state:
        return None
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


class TrackingUnavailable(RuntimeError):
    """MLflow did not answer (an outage, or a store the driver is still creating)."""


def _child_runs(client: Any, state: dict[str, Any]) -> list[Any]:
    if client is None:
        return []
    return client.search_runs(
        [state["experiment_id"]],
        filter_string=f"tags.`mlflow.parentRunId` = '{state['parent_run_id']}'",
        max_results=5000,
    )


@contextmanager
def _reading(record: StudyRecord) -> Iterator[None]:
    """MLflow's errors as TrackingUnavailable (logged, without a traceback)."""
    try:
        yield
    except Exception as err:
        log.warning("study %s: MLflow not readable: %s: %s", record.id, type(err).__name__, err)
        raise TrackingUnavailable(str(err)) from None


def progress(settings: Settings, record: StudyRecord, runs: list[Any] | None = None):
    """Counters, best trial, promotion and MLflow link; TrackingUnavailable if MLflow does
    not answer (``runs``: use these instead of reading them)."""
    counters, best, promotion, mlflow_url = TrialCounters(), None, {}, None
    state = _study_state(record)
    if runs is None:
        with _reading(record):
            runs = _child_runs(_client(settings, record, state), state)
    for run in runs:
        outcome = run.data.tags.get("pcd.outcome")
        if run.info.status == "RUNNING":
            counters.running += 1
        elif run.info.status == "FAILED" or outcome == "failed":
            counters.failed += 1
        elif outcome == "stopped_early":
            counters.stopped_early += 1
        else:
            counters.completed += 1
    trials = record.spec.get("budget", {}).get("trials", 0)
    counters.pending = max(0, trials - len(runs))
    summary_path = Path(record.study_dir or "/nonexistent") / "summary.json"
    try:
        summary = json.loads(summary_path.read_text()) if summary_path.is_file() else None
    except (OSError, ValueError):
        summary = None
    if summary is not None:
        best = BestTrial(
            trial_id=summary.get("best_trial_id"),
            value=summary.get("best_value"),
            config=summary.get("best_config") or {},
        )
        promotion = summary.get("promotion") or {}
    uri = settings.mlflow_tracking_uri
    if uri and uri.startswith("http") and "parent_run_id" in state:
        mlflow_url = (
            f"{uri.rstrip('/')}/#/experiments/{state['experiment_id']}/runs/"
            f"{state['parent_run_id']}"
        )
    return counters, best, promotion, mlflow_url


def trials(settings: Settings, record: StudyRecord) -> list[TrialOut]:
    """A study's trials, best first; TrackingUnavailable if MLflow does not answer."""
    with _reading(record):
        return _read_trials(settings, record)


def _read_trials(settings: Settings, record: StudyRecord) -> list[TrialOut]:
    out = []
    state = _study_state(record)
    client = _client(settings, record, state)
    for run in _child_runs(client, state):
        metrics = {k: float(v) for k, v in run.data.metrics.items()}
        history = client.get_metric_history(run.info.run_id, "val_top1")
        best = max((m.value for m in history), default=None)  # best epoch, as selection uses
        out.append(
            TrialOut(
                trial_id=run.data.tags.get("pcd.trial_id", ""),
                status=run.info.status,
                outcome=run.data.tags.get("pcd.outcome"),
                epochs=int(run.data.tags.get("pcd.epochs", "0") or 0),
                config=dict(run.data.params),
                last=metrics,
                best=best,
                error=run.data.tags.get("pcd.error"),
                mlflow_run_id=run.info.run_id,
            )
        )
    return sorted(out, key=lambda t: -(t.best if t.best is not None else -1.0))


def readiness(settings: Settings, store: Store) -> dict[str, str]:
    """Each dependency's state ("ok", or why not): database (the study store), mlflow, ray.
    /readyz is ready when the database is; the others are informational."""
    checks: dict[str, str] = {}
    try:
        with store.engine.connect() as conn:
            conn.execute(text("select 1"))
        checks["database"] = "ok"
    except Exception as err:
        checks["database"] = f"unreachable: {type(err).__name__}"
    uri = settings.mlflow_tracking_uri
    if uri and uri.startswith("http"):
        try:
            ok = httpx.get(f"{uri.rstrip('/')}/health", timeout=2).status_code == 200
            checks["mlflow"] = "ok" if ok else "unhealthy"
        except httpx.HTTPError as err:
            checks["mlflow"] = f"unreachable: {type(err).__name__}"
    else:
        checks["mlflow"] = "local store per study"
    if settings.ray_address:
        parsed = urlparse(f"//{settings.ray_address.split('://')[-1]}")
        port = parsed.port or (8265 if "://" in settings.ray_address else 6379)  # Jobs API | GCS
        try:
            with socket.create_connection((parsed.hostname, port), timeout=2):
                checks["ray"] = "ok"
        except OSError as err:
            checks["ray"] = f"unreachable: {err}"
    else:
        checks["ray"] = "local Ray per study"
    return checks
