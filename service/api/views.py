"""The API's rendered study views and the caches behind them (one instance per app, on
``app.state.views``): a study's progress, its rendered JSON for a second, its last known
trials; server paths redacted from every error shown."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool

from service.api import read_model
from service.api.errors import redact_paths
from service.api.schemas import Links, StudyOut, TrialOut
from service.settings import Settings
from service.store import StudyRecord

VIEW_TTL_S = 1.0  # how old a rendered GET /v1/studies/{id} may be
PROGRESS_TTL_S = 2.0  # how often a running study's progress is re-read from MLflow
MAX_VIEWS = 4096
MAX_TRIAL_LISTS = 1024
FINISHED = ("succeeded", "failed", "cancelled")


class StudyViews:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._server_paths = {
            "<studies>": settings.studies_dir,
            "<data root>": settings.data_root,
            "<teacher root>": settings.teacher_root,
        }
        # study id -> (read at, status:updated_at, progress)
        self._progress: dict[str, tuple[float, str, Any]] = {}
        # (study id, base URL) -> (rendered at, JSON); watchers poll a few studies hard
        self._rendered: dict[tuple[str, str], tuple[float, bytes]] = {}
        self._trials: dict[str, list[TrialOut]] = {}

    def public(self, text: str | None) -> str | None:
        """``text`` without this server's paths."""
        return redact_paths(text, self._server_paths)

    def study(self, record: StudyRecord, self_url: str) -> StudyOut:
        """A study as the API shows it (``self_url``: its URL)."""
        (counters, best, promotion, mlflow_urls), stale = self._progress_of(record)
        limits, stop_reason = read_model.limits(record)
        return StudyOut(
            id=record.id,
            name=record.name,
            status=record.status,
            error=self.public(record.error),
            attempts=record.attempts,
            created_at=record.created_at,
            updated_at=record.updated_at,
            started_at=record.started_at,
            finished_at=record.finished_at,
            trials=counters,
            best=best,
            promotion=promotion,
            limits=limits,
            stop_reason=self.public(stop_reason),
            stale=stale,
            links=Links(self=self_url, trials=f"{self_url}/trials", **mlflow_urls),
            kind="comparison" if record.spec.get("comparison") else "search",
            comparison=read_model.comparison(record),
        )

    def _progress_of(self, record: StudyRecord) -> tuple[Any, bool]:
        """A study's progress from MLflow, re-read at most every PROGRESS_TTL_S while it runs
        and once after it finished (the hot path of GET /v1/studies/{id}); and whether it is
        the last known progress because MLflow did not answer."""
        key = f"{record.status}:{record.updated_at}"
        cached = self._progress.get(record.id)
        if (
            cached is not None
            and cached[1] == key
            and (record.status in FINISHED or time.monotonic() - cached[0] < PROGRESS_TTL_S)
        ):
            return cached[2], False
        try:
            value = read_model.progress(self.settings, record)
        except read_model.TrackingUnavailable:  # the last known state, said to be such
            last = cached[2] if cached else read_model.progress(self.settings, record, runs=[])
            return last, True
        self._progress[record.id] = (time.monotonic(), key, value)
        return value, False

    async def rendered(self, study_id: str, base_url: str, render: Callable[[], bytes]) -> bytes:
        """A study's rendered view at most VIEW_TTL_S old; ``render`` makes a fresh one, in a
        worker thread (it reads the store and MLflow)."""
        key = (study_id, base_url)
        hit = self._rendered.get(key)
        now = time.monotonic()
        if hit is None or now - hit[0] >= VIEW_TTL_S:
            hit = (now, await run_in_threadpool(render))
            if len(self._rendered) > MAX_VIEWS:
                self._rendered.clear()
            self._rendered[key] = hit
        return hit[1]

    def forget(self, study_id: str) -> None:
        """Drop a study's rendered views (a write through this process changed it)."""
        for key in [k for k in self._rendered if k[0] == study_id]:
            self._rendered.pop(key, None)

    def trials(self, record: StudyRecord) -> tuple[list[TrialOut], bool]:
        """A study's trials, or the last known ones (and True) when MLflow does not answer."""
        try:
            trials = [
                t.model_copy(update={"error": self.public(t.error)})
                for t in read_model.trials(self.settings, record)
            ]
        except read_model.TrackingUnavailable:
            return self._trials.get(record.id, []), True
        if len(self._trials) > MAX_TRIAL_LISTS:
            self._trials.clear()
        self._trials[record.id] = trials
        return trials, False
