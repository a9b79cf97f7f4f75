"""Start study drivers and reconcile the store with what is really running.

At start-up and periodically: a running study whose driver left an outcome of the study's
current attempt is marked succeeded or failed (each launch writes its attempt number to
``launch.json`` and removes the previous outcome; the driver copies that number into its
``outcome.json``, so a previous attempt's outcome is never applied); one whose driver is
gone without an outcome is resumed (up to ``max_attempts`` drivers) or failed with the
reason; queued studies are started while fewer than ``max_concurrent`` run.

Where drivers run:
- ``PCD_RAY_ADDRESS`` unset or ``host:port``: a local subprocess in its own process session
  (so restarting the API does not stop it), with a local Ray or connected to that cluster.
  The store records ``pid:N``.
- ``PCD_RAY_ADDRESS`` an ``http(s)://`` URL: the Ray Jobs API of a cluster's head (port
  8265); each driver is a Ray Job (``job:SUBMISSION_ID``) running on the head and joining
  the cluster with ``address="auto"``. The study folder must be on storage that the API
  host and the cluster share.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import psutil

from service.control.jobs import RayJobs
from service.control.processes import start_session, terminate_group
from service.mlflow_reads import without_read_bounds
from service.settings import API_SECRETS, Settings
from service.store import TRANSITIONS, InvalidTransition, Store, StudyRecord, StudyStatus
from service.study_files import StudyFolder, TrialBudget, standby_driver_log

log = logging.getLogger(__name__)


class Supervisor:
    def __init__(self, store: Store, settings: Settings, *, max_attempts: int = 3) -> None:
        self.store = store
        self.settings = settings
        self.max_attempts = max_attempts
        self._children: dict[int, subprocess.Popen] = {}
        self._lock = threading.Lock()
        self._stopping: Counter[str] = Counter()  # study id -> cancels stopping its driver
        self.stop_timeout_s = 15.0  # SIGTERM, then SIGKILL after this long
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ray_jobs = RayJobs(settings.ray_address or "")  # drivers as Ray Jobs, if so
        self._wake = threading.Event()
        self._standby: subprocess.Popen | None = None

    # -------------------------------------------------------------------- drivers
    def study_dir(self, study_id: str) -> Path:
        return (self.settings.studies_dir / study_id).resolve()

    def _process_env(self) -> dict[str, str]:
        """A local driver's environment: this process's without the API's secrets (the driver
        and its Ray workers need neither the API tokens nor the study store), plus PCD_*."""
        env = {k: v for k, v in os.environ.items() if k not in API_SECRETS}
        return {**without_read_bounds(env), **self.settings.driver_env()}

    def remove_study_dir(self, study_id: str) -> None:
        """Remove a deleted study's folder (only ever one under the studies folder)."""
        folder, base = self.study_dir(study_id), self.settings.studies_dir.resolve()
        if folder != base and folder.is_relative_to(base):
            shutil.rmtree(folder, ignore_errors=True)

    def _driver_command(self, folder: Path) -> list[str]:
        return [sys.executable, "-m", "service.runner.launch", str(folder)]

    def launch(self, study_id: str, spec: dict, attempt: int) -> str:
        folder = self.study_dir(study_id)
        folder.mkdir(parents=True, exist_ok=True)
        files = StudyFolder(folder)
        files.clear_outcome()  # the previous attempt's
        files.clear_failed_trials_stop()  # a resume gives the failed trials another go
        files.write_launch(attempt)
        files.write_spec(spec)
        if self.settings.uses_ray_jobs:
            # the cluster's Python, not this host's: the job runs on the head
            args = ["python", "-m", "service.runner.launch", str(folder)]
            env = self.settings.driver_env()
            return f"job:{self._ray_jobs.submit(study_id, args, files.driver_log, env)}"
        proc = self._hand_to_standby(folder)
        if proc is not None:
            self._children[proc.pid] = proc
            self._spawn_standby()  # warm for the next study
            return f"pid:{proc.pid}"
        proc = start_session(
            self._driver_command(folder), self._process_env(), StudyFolder(folder).driver_log
        )
        self._children[proc.pid] = proc
        return f"pid:{proc.pid}"

    def sync_budget(self, study: StudyRecord) -> None:
        """Hand a study's trial budget, if it was changed after submit, to its driver
        (budget.json, which the running driver re-reads); nothing before its folder exists."""
        if study.budget_trials is None:
            return
        folder = StudyFolder(self.study_dir(study.id))
        if not folder.path.is_dir():
            return
        written = folder.read_budget()
        if written is None or written.trials != study.budget_trials:
            folder.write_budget(TrialBudget(trials=study.budget_trials))

    # A warm driver: a process that has imported torch, Ray, Tune, MLflow and Optuna and
    # waits for a study folder on stdin (local drivers only; PCD_WARM_DRIVER=false: none).
    def _spawn_standby(self) -> None:
        if self.settings.uses_ray_jobs or not self.settings.warm_driver or self._stop.is_set():
            return
        self.settings.studies_dir.mkdir(parents=True, exist_ok=True)
        self._standby = start_session(
            [sys.executable, "-m", "service.runner.launch", "--standby"],
            self._process_env(),
            standby_driver_log(self.settings.studies_dir),
            stdin=subprocess.PIPE,
        )

    def _hand_to_standby(self, folder: Path) -> subprocess.Popen | None:
        proc, self._standby = self._standby, None
        if proc is None or proc.poll() is not None:
            return None
        try:
            proc.stdin.write(f"{folder}\n".encode())  # type: ignore[union-attr]
            proc.stdin.close()  # type: ignore[union-attr]
        except OSError:  # it died meanwhile: start a fresh driver instead
            return None
        return proc

    def alive(self, driver: str | None) -> bool:
        if driver and driver.startswith("job:"):
            return self._ray_jobs.alive(driver.removeprefix("job:"))
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
        if driver.startswith("job:"):  # type: ignore[union-attr]
            self._ray_jobs.stop(driver.removeprefix("job:"), timeout)  # type: ignore[union-attr]
            return
        pid = int(driver.removeprefix("pid:"))  # type: ignore[union-attr]
        terminate_group(pid, lambda: self.alive(driver), timeout)

    # ----------------------------------------------------------------- reconcile
    def reconcile(self) -> None:
        with self._lock:
            running, _ = self.store.list(status=StudyStatus.running, limit=10_000)
            for study in running:
                if study.id in self._stopping:  # a cancel is stopping its driver
                    continue
                try:
                    if study.parent_run_id is None:  # the driver has made it since?
                        folder = StudyFolder(self.study_dir(study.id))
                        self.store.record_parent_run(study.id, folder.parent_run_id())
                    self.sync_budget(study)
                    if self._apply_outcome(study) is None and not self.alive(study.driver):
                        self._driver_gone(study)
                except (InvalidTransition, KeyError):
                    continue  # changed concurrently (e.g. cancelled or deleted)
            self._start_queued()

    def _apply_outcome(self, study: StudyRecord) -> StudyStatus | None:
        """Finish a running study with the outcome its current attempt's driver wrote;
        returns that status, or None when there is none."""
        outcome = StudyFolder(self.study_dir(study.id)).read_outcome(study.attempts)
        if outcome is None:
            return None
        to = StudyStatus(outcome.status)
        self.store.transition(study.id, to, expected=StudyStatus.running, error=outcome.error)
        return to

    def _driver_gone(self, study: StudyRecord) -> None:
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

    def _start_queued(self) -> None:
        running_now = self.store.counts().get(StudyStatus.running.value, 0)
        free = self.settings.max_concurrent_studies - running_now
        if free <= 0:
            return
        queued, _ = self.store.list(status=StudyStatus.queued, limit=10_000)
        for study in sorted(queued, key=lambda s: s.created_at)[:free]:
            try:
                started = self.store.transition(
                    study.id,
                    StudyStatus.running,
                    expected=StudyStatus.queued,
                    driver="starting",
                    error=None,
                    study_dir=str(self.study_dir(study.id)),
                )
            except (InvalidTransition, KeyError):
                continue
            try:
                driver = self.launch(study.id, study.spec, started.attempts)
            except Exception as err:  # e.g. the cluster's Jobs API not ready yet
                log.warning("study %s: could not start its driver: %s", study.id, err)
                self.store.unstart(study.id, f"waiting to start: {err}")
                continue
            with self.store.session() as s:
                record = s.get(StudyRecord, study.id)
                if record is not None:
                    record.driver = driver
            self.sync_budget(started)

    def cancel(self, study_id: str) -> None:
        """Cancel a study. A running study whose driver already wrote its outcome finishes
        with that outcome instead (InvalidTransition: it is no longer cancellable).

        The driver is stopped outside the supervisor's lock (a driver may take
        ``stop_timeout_s`` to exit): reconciling and other studies' writes go on meanwhile,
        and reconcile leaves a study that is being stopped alone."""
        with self._lock:
            study = self._cancellable(study_id)
            if study.status != StudyStatus.running.value:
                self._record_cancel(study_id, StudyStatus(study.status))
                return
            self._raise_if_finished(study)
            self._stopping[study_id] += 1
        try:
            self.stop(study.driver, self.stop_timeout_s)
        finally:
            with self._lock:
                try:
                    # a driver stopped by SIGTERM writes no outcome: one found now was
                    # written before the stop, and wins
                    self._raise_if_finished(study)
                    self._record_cancel(study_id, StudyStatus.running)
                finally:
                    self._stopping[study_id] -= 1
                    if not self._stopping[study_id]:
                        del self._stopping[study_id]

    def _cancellable(self, study_id: str) -> StudyRecord:
        study = self.store.get(study_id)
        if study is None:
            raise KeyError(study_id)
        current = StudyStatus(study.status)
        if StudyStatus.cancelled not in TRANSITIONS[current]:
            raise InvalidTransition(f"a {current} study cannot become cancelled")
        return study

    def _raise_if_finished(self, study: StudyRecord) -> None:
        finished = self._apply_outcome(study)
        if finished is not None:
            raise InvalidTransition(f"study {study.id} already {finished}")

    def _record_cancel(self, study_id: str, current: StudyStatus) -> None:
        self.store.transition(
            study_id, StudyStatus.cancelled, expected=current, error="cancelled by request"
        )

    # --------------------------------------------------------------------- loop
    def nudge(self) -> None:
        """Reconcile now rather than at the next tick (a study was queued)."""
        self._wake.set()

    def start(self, interval: float = 2.0) -> None:
        self._spawn_standby()

        def loop() -> None:
            while not self._stop.is_set():
                self._wake.clear()
                try:
                    self.reconcile()
                except Exception:  # keep supervising; the error is logged
                    log.exception("reconcile failed")
                self._wake.wait(interval)

        self._thread = threading.Thread(target=loop, name="pcd-supervisor", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        standby, self._standby = self._standby, None
        if standby is not None and standby.poll() is None:
            standby.stdin.close()  # type: ignore[union-attr]  # it exits on end of input
            try:
                standby.wait(timeout=1)
            except subprocess.TimeoutExpired:
                os.killpg(standby.pid, signal.SIGTERM)
