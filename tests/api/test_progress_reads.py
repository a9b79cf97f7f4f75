"""Reading a study's progress while its driver is still creating its tracking store."""

from __future__ import annotations

import json

from service.api.read_model import progress as _progress
from service.api.read_model import trials as _trials
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


def _study_with_runs(tmp_path):
    """A study folder whose (real, SQLite) MLflow store holds a parent run and two trial runs
    as the driver leaves them: one completed, one failed with its reason."""
    from mlflow.tracking import MlflowClient

    from service.runner.study import ensure_experiment

    folder = tmp_path / "study"
    folder.mkdir()
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    experiment_id = ensure_experiment(client, tmp_path)
    parent = client.create_run(experiment_id).info.run_id
    for trial, status, tags in [
        ("t1", "FINISHED", {"pcd.outcome": "completed"}),
        ("t2", "FAILED", {"pcd.outcome": "failed", "pcd.error": "NonFiniteLoss: loss is nan"}),
    ]:
        run = client.create_run(
            experiment_id,
            tags={"mlflow.parentRunId": parent, "pcd.trial_id": trial, **tags},
        ).info.run_id
        client.log_metric(run, "val_top1", 50.0, step=1)
        client.set_terminated(run, status=status)
    state = {"parent_run_id": parent, "experiment_id": experiment_id}
    (folder / "study.json").write_text(json.dumps(state))
    return StudyRecord(
        id="s1", name="s", status="running", spec={"budget": {"trials": 2}}, study_dir=str(folder)
    )


def test_trials_carry_their_error(tmp_path) -> None:
    record = _study_with_runs(tmp_path)
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'store.db'}")
    errors = {t.trial_id: t.error for t in _trials(settings, record)}
    assert errors == {"t1": None, "t2": "NonFiniteLoss: loss is nan"}
    counters, _, _, _ = _progress(settings, record)
    assert (counters.completed, counters.failed, counters.pending) == (1, 1, 0)
