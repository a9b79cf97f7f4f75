"""Reading a study's progress while its driver is still creating its tracking store."""

from __future__ import annotations

import json

from service.api.app import _progress, _trials
from service.settings import Settings
from service.store import StudyRecord


def test_a_store_being_created_is_not_opened(tmp_path) -> None:
    """Before the driver has its parent run, the API must neither fail (it answered 500 when
    MLflow's migrations ran from both sides) nor touch the driver's SQLite store."""
    folder = tmp_path / "study"
    folder.mkdir()
    half_made = b"SQLite format 3\x00 half-made by the driver"
    (folder / "mlflow.db").write_bytes(half_made)
    (folder / "study.json").write_text(json.dumps({"spec": {}}))  # no parent run yet
    record = StudyRecord(
        id="s1", name="s", status="running", spec={"budget": {"trials": 3}}, study_dir=str(folder)
    )
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'store.db'}")
    assert _trials(settings, record) == []
    counters, best, _, _ = _progress(settings, record)
    assert counters.pending == 3 and best is None
    assert (folder / "mlflow.db").read_bytes() == half_made
