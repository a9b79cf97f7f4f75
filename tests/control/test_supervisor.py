"""The supervisor: launching, watching and stopping drivers, and its bookkeeping (no cluster
needed)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest
from pcd_testing.processes import wait_for
from pydantic import ValidationError

from service.control.supervisor import Supervisor
from service.mlflow_reads import bound_reads
from service.settings import Settings
from service.store import InvalidTransition, Store, StudyStatus, migrate
from service.study_files import Outcome, StudyFolder, StudyState


def write_outcome(folder: Path, status: str, error: str | None = None, *, attempt: int) -> None:
    StudyFolder(folder).write_outcome(Outcome(status=status, error=error, attempt=attempt))


def test_a_launch_failure_requeues_the_study_with_the_reason(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    migrate(url)
    store = Store(url)
    # a Ray Jobs address where nothing listens: every submission fails
    settings = Settings(
        database_url=url, ray_address="http://127.0.0.1:9", studies_dir=tmp_path / "studies"
    )
    study, _ = store.create("s", {"name": "s"})
    supervisor = Supervisor(store, settings)
    assert settings.uses_ray_jobs
    supervisor.reconcile()
    supervisor.reconcile()
    after = store.get(study.id)
    assert after.status == StudyStatus.queued.value
    assert after.attempts == 0  # a launch that never happened is not an attempt
    assert after.error.startswith("waiting to start:")
    assert after.driver is None


def test_driver_placement_follows_the_ray_address():
    def jobs(address: str | None) -> bool:
        return Settings(ray_address=address).uses_ray_jobs

    assert jobs("http://ray-head:8265") and jobs("https://ray.example:443")
    assert not jobs("127.0.0.2:6379") and not jobs(None)


def test_optuna_storage_must_not_be_the_study_store():
    url = "postgresql+psycopg://postgres@127.0.0.1:5432/pcd"
    with pytest.raises(ValidationError, match="another database"):
        Settings(database_url=url, optuna_storage=url)


class _SleepingDriver(Supervisor):
    """Launches a stand-in driver that just waits (the outcome is written by the test)."""

    def _driver_command(self, folder: Path) -> list[str]:
        return [sys.executable, "-c", "import time; time.sleep(120)"]


@pytest.fixture
def supervised(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    migrate(url)
    store = Store(url)
    settings = Settings(database_url=url, studies_dir=tmp_path / "studies", warm_driver=False)
    supervisor = _SleepingDriver(store, settings)
    yield store, supervisor
    for child in supervisor._children.values():
        child.kill()
        child.wait()


def _kill_driver(supervisor: Supervisor, driver: str) -> None:
    child = supervisor._children[int(driver.removeprefix("pid:"))]
    child.kill()
    child.wait()


def test_a_resumed_study_ignores_the_previous_attempts_outcome(supervised) -> None:
    store, supervisor = supervised
    study, _ = store.create("s", {"name": "s"})
    folder = supervisor.study_dir(study.id)
    supervisor.reconcile()
    first = store.get(study.id)
    assert first.status == "running" and first.attempts == 1
    assert StudyFolder(folder).read_attempt() == 1
    write_outcome(folder, "failed", "old error", attempt=1)
    _kill_driver(supervisor, first.driver)
    supervisor.reconcile()
    assert store.get(study.id).status == "failed"

    store.transition(study.id, StudyStatus.queued)  # a resume
    supervisor.reconcile()
    second = store.get(study.id)
    assert second.status == "running" and second.attempts == 2
    assert StudyFolder(folder).read_attempt() == 2
    assert not StudyFolder(folder).outcome_file.exists()
    # the previous attempt's outcome turns up again (a late writer, shared storage)
    write_outcome(folder, "failed", "old error", attempt=1)
    for _ in range(3):
        supervisor.reconcile()
        assert store.get(study.id).status == "running"
    assert store.counts() == {"running": 1}  # no second driver for the same study
    write_outcome(folder, "succeeded", attempt=2)
    supervisor.reconcile()
    done = store.get(study.id)
    assert done.status == "succeeded" and done.error is None


def test_a_cancel_after_the_driver_wrote_its_outcome_keeps_the_outcome(supervised) -> None:
    store, supervisor = supervised
    study, _ = store.create("s", {"name": "s"})
    supervisor.reconcile()
    write_outcome(supervisor.study_dir(study.id), "succeeded", attempt=1)
    with pytest.raises(InvalidTransition, match="already succeeded"):
        supervisor.cancel(study.id)
    assert store.get(study.id).status == "succeeded"


def test_a_cancel_stops_a_running_driver(supervised) -> None:
    store, supervisor = supervised
    study, _ = store.create("s", {"name": "s"})
    supervisor.reconcile()
    driver = store.get(study.id).driver
    supervisor.cancel(study.id)
    assert store.get(study.id).status == "cancelled"
    assert not supervisor.alive(driver)
    with pytest.raises(InvalidTransition):
        supervisor.cancel(study.id)


class _EnvDumpingDriver(Supervisor):
    def _driver_command(self, folder: Path) -> list[str]:
        code = "import json, os; print(json.dumps(dict(os.environ)))"
        return [sys.executable, "-c", code]


def test_drivers_do_not_inherit_the_api_secrets(tmp_path, monkeypatch) -> None:
    import json

    url = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("PCD_API_TOKENS", "secret-token:rw")
    monkeypatch.setenv("PCD_DATABASE_URL", "postgresql+psycopg://u:secret@db/pcd")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.delenv("PCD_MLFLOW_LOCAL_DIR", raising=False)  # the default: beside the studies
    migrate(url)
    store = Store(url)
    settings = Settings(database_url=url, studies_dir=tmp_path / "studies", warm_driver=False)
    bound_reads(settings.mlflow_read_timeout_s)  # as the API does: for its own reads only
    supervisor = _EnvDumpingDriver(store, settings)
    study, _ = store.create("s", {"name": "s"})
    supervisor.reconcile()
    for child in supervisor._children.values():
        child.wait(timeout=30)
    env = json.loads(StudyFolder(supervisor.study_dir(study.id)).driver_log.read_text())
    assert "PCD_API_TOKENS" not in env and "PCD_DATABASE_URL" not in env
    assert env["PCD_DATA_ROOT"] == str(settings.data_root.resolve())  # what it needs, it gets
    assert env["PCD_MLFLOW_OUTAGE_S"] == "900.0"
    # no tracking server: every driver tracks in the one local store, beside the studies
    assert env["PCD_MLFLOW_LOCAL_DIR"] == str(tmp_path.resolve())
    assert "MLFLOW_HTTP_REQUEST_TIMEOUT" not in env  # MLflow's defaults: patient drivers
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in env


def test_removing_a_study_folder_stays_under_the_studies_folder(supervised) -> None:
    _, supervisor = supervised
    folder = supervisor.study_dir("abc")
    folder.mkdir(parents=True)
    StudyFolder(folder).write_spec({})
    supervisor.remove_study_dir("abc")
    assert not folder.exists()
    supervisor.remove_study_dir("..")
    supervisor.remove_study_dir("")
    assert supervisor.settings.studies_dir.is_dir()


class _FakeJobsApi:
    """A Ray Jobs API that records what it is asked (JobSubmissionClient's methods)."""

    def __init__(self) -> None:
        self.submitted: list[dict] = []
        self.stopped: list[str] = []

    def submit_job(self, **kwargs) -> str:
        self.submitted.append(kwargs)
        return kwargs["submission_id"]

    def get_job_status(self, submission_id: str):
        from ray.job_submission import JobStatus

        return JobStatus.STOPPED if submission_id in self.stopped else JobStatus.RUNNING

    def stop_job(self, submission_id: str) -> bool:
        self.stopped.append(submission_id)
        return True


def test_a_ray_job_driver_is_submitted_watched_and_stopped(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PCD_API_TOKENS", "secret-token:rw")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    migrate(url)
    store = Store(url)
    settings = Settings(
        database_url=url, ray_address="http://head:8265", studies_dir=tmp_path / "studies"
    )
    supervisor = Supervisor(store, settings)
    jobs = supervisor._ray_jobs._client = _FakeJobsApi()
    study, _ = store.create("s", {"name": "s"})
    supervisor.reconcile()

    driver = store.get(study.id).driver
    folder = supervisor.study_dir(study.id)
    (submitted,) = jobs.submitted
    assert driver == f"job:{submitted['submission_id']}"
    assert submitted["submission_id"].startswith(f"pcd-{study.id}-")
    assert submitted["entrypoint"] == (
        f"python -m service.runner.launch {folder} >> {StudyFolder(folder).driver_log} 2>&1"
    )
    env = submitted["runtime_env"]["env_vars"]
    assert env["PCD_RAY_ADDRESS"] == "auto" and "PCD_API_TOKENS" not in env
    assert supervisor.alive(driver)

    supervisor.cancel(study.id)
    assert jobs.stopped == [submitted["submission_id"]]
    assert store.get(study.id).status == StudyStatus.cancelled.value


def test_the_store_records_the_parent_run_the_driver_made(supervised) -> None:
    """The driver writes its MLflow parent run into the study folder; the supervisor copies
    it into the store (so the store says where a study's results are), once."""
    store, supervisor = supervised
    study, _ = store.create("s", {"name": "s"})
    supervisor.reconcile()
    assert store.get(study.id).parent_run_id is None  # no parent run yet
    folder = StudyFolder(supervisor.study_dir(study.id))
    folder.write_state(StudyState(experiment_id="1", parent_run_id="run-a"))
    supervisor.reconcile()
    assert store.get(study.id).parent_run_id == "run-a"
    folder.write_state(StudyState(experiment_id="1", parent_run_id="run-b"))
    supervisor.reconcile()
    assert store.get(study.id).parent_run_id == "run-a"  # recorded once


class _StubbornDriver(Supervisor):
    """A stand-in driver that notes a SIGTERM in ``term.txt`` and keeps running (a driver
    slow to exit): a cancel then waits out ``stop_timeout_s`` and kills it."""

    def _driver_command(self, folder: Path) -> list[str]:
        code = (
            "import pathlib, signal, time\n"
            f"mark = pathlib.Path({str(folder / 'term.txt')!r})\n"
            "signal.signal(signal.SIGTERM, lambda *a: mark.write_text('term'))\n"
            "mark.with_name('ready.txt').write_text('ready')\n"
            "while True: time.sleep(0.05)\n"
        )
        return [sys.executable, "-c", code]


def test_a_cancel_does_not_hold_the_supervisor_while_its_driver_stops(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    migrate(url)
    store = Store(url)
    settings = Settings(database_url=url, studies_dir=tmp_path / "studies", warm_driver=False)
    supervisor = _StubbornDriver(store, settings)
    supervisor.stop_timeout_s = 5.0
    slow, _ = store.create("slow", {"name": "slow"})
    other, _ = store.create("other", {"name": "other"})
    supervisor.reconcile()
    assert store.get(slow.id).status == store.get(other.id).status == "running"
    folder = supervisor.study_dir(slow.id)
    # its SIGTERM handler is set (a SIGTERM before it would simply end the process)
    assert wait_for(lambda: (folder / "ready.txt").is_file(), 60, 0.05)
    cancelling = threading.Thread(target=supervisor.cancel, args=(slow.id,))
    cancelling.start()
    try:
        assert wait_for(lambda: (folder / "term.txt").is_file(), 10, 0.05)
        # the driver has been asked to stop and is still running
        assert cancelling.is_alive() and supervisor.alive(store.get(slow.id).driver)
        assert supervisor._lock.acquire(blocking=False), "cancel holds the lock while stopping"
        supervisor._lock.release()
        supervisor.reconcile()  # goes on, and leaves the study being stopped alone
        assert store.get(slow.id).status == "running"
        assert store.get(other.id).status == "running"
    finally:
        cancelling.join(timeout=30)
        for child in supervisor._children.values():
            child.kill()
            child.wait()
    assert store.get(slow.id).status == "cancelled"
    assert not supervisor.alive(store.get(slow.id).driver)
