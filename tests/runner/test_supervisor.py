"""The supervisor's bookkeeping when a driver cannot be launched (no cluster needed)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.runner.supervisor import Supervisor, uses_ray_jobs
from service.settings import Settings
from service.store import Store, StudyStatus, migrate


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
    assert supervisor.uses_ray_jobs
    supervisor.reconcile()
    supervisor.reconcile()
    after = store.get(study.id)
    assert after.status == StudyStatus.queued.value
    assert after.attempts == 0  # a launch that never happened is not an attempt
    assert after.error.startswith("waiting to start:")
    assert after.driver is None


def test_driver_placement_follows_the_ray_address():
    assert uses_ray_jobs("http://ray-head:8265")
    assert uses_ray_jobs("https://ray.example:443")
    assert not uses_ray_jobs("127.0.0.2:6379")
    assert not uses_ray_jobs(None)


def test_optuna_storage_must_not_be_the_study_store():
    url = "postgresql+psycopg://postgres@127.0.0.1:5432/pcd"
    with pytest.raises(ValidationError, match="another database"):
        Settings(database_url=url, optuna_storage=url)
