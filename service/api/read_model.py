"""A study's read model: its state, progress, trials and the service's readiness, read
from the study folder and the study's MLflow runs. Read-only: nothing here writes.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
from sqlalchemy import text

from search_spaces.schema import ComparisonSpec, Objective
from service import mlflow_links
from service.api.schemas import BestTrial, StudyLimits, TrialCounters, TrialOut, TrialState
from service.api.trial_config import trial_params, typed_config
from service.ranking import best_value, ranked
from service.settings import Settings
from service.store import Store, StudyRecord
from service.study_files import (
    ComparisonResult,
    LocalMlflowStore,
    StudyFolder,
    StudyState,
    StudySummary,
    Tags,
    TrialOutcome,
    child_runs_filter,
)

log = logging.getLogger(__name__)


def _folder(record: StudyRecord) -> StudyFolder | None:
    return StudyFolder(Path(record.study_dir)) if record.study_dir else None


def _study_state(record: StudyRecord) -> StudyState:
    """The study's state as its driver wrote it (empty before that, or while unreadable)."""
    folder = _folder(record)
    try:
        state = folder.read_state() if folder else None
    except (OSError, ValueError):
        state = None
    return state or StudyState()


def _summary(record: StudyRecord) -> StudySummary | None:
    folder = _folder(record)
    try:
        return folder.read_summary() if folder else None
    except (OSError, ValueError):
        return None


def _tracking_uri(settings: Settings, record: StudyRecord) -> str | None:
    """The study's tracking store: the server, else its own store (a study of an older
    version), else the shared local one (once it exists)."""
    if settings.mlflow_tracking_uri:
        return settings.mlflow_tracking_uri
    folder = _folder(record)
    local = LocalMlflowStore(settings.local_mlflow_dir)
    if folder and folder.mlflow_db.is_file():
        return folder.mlflow_uri
    return local.uri if local.db.is_file() else None


def _client(settings: Settings, record: StudyRecord, state: StudyState) -> Any:
    """An MLflow client for the study's tracking store, once the driver has made its parent
    run. Not before: opening a SQLite store that the driver is still creating would run
    MLflow's migrations from here too, and the two clash."""
    uri = _tracking_uri(settings, record)
    if not uri or state.parent_run_id is None:
        return None
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


class TrackingUnavailable(RuntimeError):
    """MLflow did not answer (an outage, or a store the driver is still creating)."""


def _child_runs(client: Any, state: StudyState) -> list[Any]:
    if client is None or state.parent_run_id is None:
        return []
    runs = client.search_runs(
        [state.experiment_id],
        filter_string=child_runs_filter(state.parent_run_id),
        max_results=5000,
    )
    return [r for r in runs if r.data.tags.get(Tags.SEED_RUN) != "true"]  # a comparison's


def comparison(record: StudyRecord) -> ComparisonResult | None:
    """A finished comparison study's result (None for a search, or before it finished)."""
    summary = _summary(record)
    return summary.comparison if summary is not None else None


@contextmanager
def _reading(record: StudyRecord) -> Iterator[None]:
    """MLflow's errors as TrackingUnavailable (logged, without a traceback)."""
    try:
        yield
    except Exception as err:
        log.warning("study %s: MLflow not readable: %s: %s", record.id, type(err).__name__, err)
        raise TrackingUnavailable(str(err)) from None


def trial_state(run: Any) -> TrialState:
    """A trial's run in the study's words (one of the counters' names)."""
    outcome = run.data.tags.get(Tags.OUTCOME)
    if run.info.status == "RUNNING":
        return "running"
    if run.info.status == "FAILED" or outcome == TrialOutcome.failed:
        return "failed"
    if outcome == TrialOutcome.stopped_early:
        return "stopped_early"
    return "completed"


def _outcome(tag: str | None) -> TrialOutcome | None:
    """The outcome tag if it is one of ours (a run tagged by hand is shown without one)."""
    return TrialOutcome(tag) if tag in set(TrialOutcome) else None


def progress(settings: Settings, record: StudyRecord, runs: list[Any] | None = None):
    """Counters, best trial, promotion and MLflow links (Links' ``mlflow`` and
    ``mlflow_experiment``); TrackingUnavailable if MLflow does not answer (``runs``: use
    these instead of reading them)."""
    counters, best, promotion = TrialCounters(), None, {}
    state = _study_state(record)
    if runs is None:
        with _reading(record):
            runs = _child_runs(_client(settings, record, state), state)
    for run in runs:
        counted = trial_state(run)
        setattr(counters, counted, getattr(counters, counted) + 1)
    counters.pending = max(0, _trial_budget(record) - len(runs))
    summary = _summary(record)
    if summary is not None:
        best = BestTrial(
            trial_id=summary.best_trial_id,
            value=summary.best_value,
            config=summary.best_config,
        )
        promotion = summary.promotion
    mlflow_urls = mlflow_links.links(
        settings.mlflow_tracking_uri,
        settings.mlflow_public_url,
        state.experiment_id,
        state.parent_run_id,
    )
    return counters, best, promotion, mlflow_urls


def _trial_budget(record: StudyRecord) -> int:
    """The study's trials in all: a comparison's budget is each tuned entry's."""
    raw = record.spec.get("comparison")
    if not raw:
        return record.trial_budget
    try:
        return record.trial_budget * ComparisonSpec.model_validate(raw).searched()
    except ValueError:  # a stored spec of another version: no count of its entries
        return record.trial_budget


def limits(record: StudyRecord) -> tuple[StudyLimits, str | None]:
    """What ends the study's search (its budget as changed since submit), and why its
    search ended before the budget, once the driver decided so (stop.json)."""
    spec = record.spec
    out = StudyLimits(
        trials=record.trial_budget,
        goal=(spec.get("objective") or {}).get("goal"),
        max_failed_trials=(spec.get("budget") or {}).get("max_failed_trials"),
    )
    folder = _folder(record)
    stop = folder.read_stop() if folder else None
    return out, stop.detail if stop else None


def trials(settings: Settings, record: StudyRecord) -> list[TrialOut]:
    """A study's trials, best first by the study's objective (service.ranking);
    TrackingUnavailable if MLflow does not answer."""
    with _reading(record):
        return _read_trials(settings, record)


def _read_trials(settings: Settings, record: StudyRecord) -> list[TrialOut]:
    out = []
    state = _study_state(record)
    client = _client(settings, record, state)
    objective = Objective.model_validate(record.spec.get("objective") or {})
    space = record.spec.get("space") or {}
    for run in _child_runs(client, state):
        metrics = {k: float(v) for k, v in run.data.metrics.items()}
        history = client.get_metric_history(run.info.run_id, objective.metric)
        tags = run.data.tags
        out.append(
            TrialOut(
                trial_id=tags.get(Tags.TRIAL_ID, ""),
                entry=tags.get(Tags.ENTRY),
                state=trial_state(run),
                status=run.info.status,
                outcome=_outcome(tags.get(Tags.OUTCOME)),
                epochs=int(tags.get(Tags.EPOCHS, "0") or 0),
                config=typed_config(trial_params(run.data.params, space), space),
                last=metrics,
                best=best_value([m.value for m in history], objective.mode),
                error=tags.get(Tags.ERROR),
                mlflow_run_id=run.info.run_id,
            )
        )
    return ranked(out, lambda t: t.best, objective.mode)


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
        checks["mlflow"] = "local store (PCD_MLFLOW_LOCAL_DIR)"  # no server path: /readyz is open
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
