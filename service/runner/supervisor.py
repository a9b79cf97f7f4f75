"""Start study drivers and reconcile the store with what is really running.

At start-up and periodically: a running study whose driver left an outcome is marked
succeeded or failed; one whose driver is gone without an outcome is resumed (up to
``max_attempts`` drivers) or failed with the reason; queued studies are started while fewer
than ``max_concurrent`` run. Drivers run in their own process session, so restarting the
API does not stop them.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from service.runner.launch import OUTCOME
from service.settings import Settings
from service.store import InvalidTransition, Store, StudyStatus

log = logging.getLogger(__name__)


class Supervisor:
    def __init__(self, store: Store, settings: Settings, *, max_attempts: int = 3) -> None:
        self.store = store
        self.settings = settings
        self.max_attempts = max_attempts
        self._children: dict[int, subprocess.Popen] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -------------------------------------------------------------------- drivers
    def study_dir(self, study_id: str) -> Path:
        return (self.settings.studies_dir / study_id).resolve()

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        s = self.settings
        for key, value in {
            "PCD_MLFLOW_TRACKING_URI": s.mlflow_tracking_uri,
            "PCD_RAY_ADDRESS": s.ray_address,
            "PCD_OPTUNA_STORAGE": s.optuna_storage,
            "PCD_DATA_ROOT": str(s.data_root.resolve()),
            "PCD_TEACHER_ROOT": str(s.teacher_root.resolve()),
        }.items():
            if value:
                env[key] = value
        return env

    def launch(self, study_id: str, spec: dict) -> str:
        folder = self.study_dir(study_id)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "spec.json").write_text(json.dumps(spec))
        log_file = (folder / "driver.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "service.runner.launch", str(folder)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self._env(),
            start_new_session=True,
        )
        log_file.close()
        self._children[proc.pid] = proc
        return f"pid:{proc.pid}"

    def alive(self, driver: str | None) -> bool:
        if not driver or not driver.startswith("pid:"):
            return False
        pid = int(driver.removeprefix("pid:"))
        child = self._children.get(pid)
        if child is not None:
            return child.poll() is None
        try:
            proc = psutil.Process(pid)
            return (
                proc.is_running()
                and proc.status() != psutil.STATUS_ZOMBIE
                and any("service.runner.launch" in part for part in proc.cmdline())
            )
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False

    def stop(self, driver: str | None, timeout: float = 15.0) -> None:
        if not self.alive(driver):
            return
        pid = int(driver.removeprefix("pid:"))  # type: ignore[union-attr]
        try:
            os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self.alive(driver) and time.monotonic() < deadline:
                time.sleep(0.2)
            if self.alive(driver):
                os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    # ----------------------------------------------------------------- reconcile
    def reconcile(self) -> None:
        with self._lock:
            running, _ = self.store.list(status=StudyStatus.running, limit=10_000)
            for study in running:
                outcome = self.study_dir(study.id) / OUTCOME
                try:
                    if outcome.is_file():
                        result = json.loads(outcome.read_text())
                        to = StudyStatus(result["status"])
                        self.store.transition(
                            study.id, to, expected=StudyStatus.running, error=result.get("error")
                        )
                    elif not self.alive(study.driver):
                        if study.attempts < self.max_attempts:
                            self.store.transition(
                                study.id,
                                StudyStatus.failed,
                                expected=StudyStatus.running,
                                error="driver exited without an outcome",
                            )
                            self.store.transition(study.id, StudyStatus.queued)
                            log.warning("study %s: driver gone, resuming", study.id)
                        else:
                            self.store.transition(
                                study.id,
                                StudyStatus.failed,
                                expected=StudyStatus.running,
                                error=f"driver exited without an outcome {study.attempts} "
                                "times; see driver.log in the study folder",
                            )
                except InvalidTransition:
                    continue  # changed concurrently (e.g. cancelled)
            running_now = self.store.counts().get(StudyStatus.running.value, 0)
            free = self.settings.max_concurrent_studies - running_now
            if free > 0:
                queued, _ = self.store.list(status=StudyStatus.queued, limit=10_000)
                for study in sorted(queued, key=lambda s: s.created_at)[:free]:
                    try:
                        self.store.transition(
                            study.id,
                            StudyStatus.running,
                            expected=StudyStatus.queued,
                            driver="starting",
                            study_dir=str(self.study_dir(study.id)),
                        )
                    except InvalidTransition:
                        continue
                    driver = self.launch(study.id, study.spec)
                    with self.store.session() as s:
                        from service.store import StudyRecord

                        s.get(StudyRecord, study.id).driver = driver

    def cancel(self, study_id: str) -> None:
        with self._lock:
            study = self.store.get(study_id)
            if study is None:
                raise KeyError(study_id)
            self.store.transition(study_id, StudyStatus.cancelled, error="cancelled by request")
            self.stop(study.driver)

    # --------------------------------------------------------------------- loop
    def start(self, interval: float = 2.0) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self.reconcile()
                except Exception:  # keep supervising; the error is logged
                    log.exception("reconcile failed")
                self._stop.wait(interval)

        self._thread = threading.Thread(target=loop, name="pcd-supervisor", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
