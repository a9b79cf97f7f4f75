"""Reading a study's progress and trials from its folder and its MLflow runs."""

from __future__ import annotations

from service.api.read_model import progress as _progress
from service.api.read_model import trials as _trials
from service.settings import Settings
from service.store import StudyRecord
from service.study_files import StudyFolder, StudyState, Tags, TrialOutcome


def test_a_store_being_created_is_not_opened(tmp_path) -> None:
    """Before the driver has its parent run, the API must neither fail (it answered 500 when
    MLflow's migrations ran from both sides) nor touch the driver's SQLite store."""
    folder = StudyFolder(tmp_path / "study")
    folder.path.mkdir()
    half_made = b"SQLite format 3\x00 half-made by the driver"
    folder.mlflow_db.write_bytes(half_made)
    folder.write_state(StudyState(spec={}))  # no parent run yet
    record = StudyRecord(
        id="s1",
        name="s",
        status="running",
        spec={"budget": {"trials": 3}},
        study_dir=str(folder.path),
    )
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'store.db'}")
    assert _trials(settings, record) == []
    counters, best, _, _ = _progress(settings, record)
    assert counters.pending == 3 and best is None
    assert folder.mlflow_db.read_bytes() == half_made


def _study_with_runs(tmp_path, trials, spec=None, params=None) -> StudyRecord:
    """A study folder whose (real, SQLite) MLflow store holds a parent run and ``trials``
    runs as the driver leaves them: (trial id, run status, tags, {metric: per-epoch values});
    ``params``: trial id -> the params logged on its run."""
    from mlflow.tracking import MlflowClient

    from service.runner.study import ensure_experiment

    folder = StudyFolder(tmp_path / "study")
    folder.path.mkdir()
    client = MlflowClient(folder.mlflow_uri)
    experiment_id = ensure_experiment(client, tmp_path)
    parent = client.create_run(experiment_id).info.run_id
    for trial, status, tags, history in trials:
        run = client.create_run(
            experiment_id, tags={Tags.PARENT_RUN: parent, Tags.TRIAL_ID: trial, **tags}
        ).info.run_id
        for key, value in (params or {}).get(trial, {}).items():
            client.log_param(run, key, value)
        for metric, values in history.items():
            for epoch, value in enumerate(values, start=1):
                client.log_metric(run, metric, value, step=epoch)
        client.set_terminated(run, status=status)
    folder.write_state(StudyState(parent_run_id=parent, experiment_id=experiment_id))
    spec = {"budget": {"trials": len(trials)}, **(spec or {})}
    return StudyRecord(id="s1", name="s", status="running", spec=spec, study_dir=str(folder.path))


def test_trials_carry_their_error(tmp_path) -> None:
    record = _study_with_runs(
        tmp_path,
        [
            ("t1", "FINISHED", {Tags.OUTCOME: TrialOutcome.completed}, {"val_top1": [50.0]}),
            (
                "t2",
                "FAILED",
                {Tags.OUTCOME: TrialOutcome.failed, Tags.ERROR: "NonFiniteLoss: loss is nan"},
                {"val_top1": [50.0]},
            ),
        ],
    )
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'store.db'}")
    errors = {t.trial_id: t.error for t in _trials(settings, record)}
    assert errors == {"t1": None, "t2": "NonFiniteLoss: loss is nan"}
    counters, _, _, _ = _progress(settings, record)
    assert (counters.completed, counters.failed, counters.pending) == (1, 1, 0)


def test_trials_are_ranked_by_the_studys_objective(tmp_path) -> None:
    """A val_loss (minimise) study: the lowest loss at any epoch first. The API used to rank
    by the highest val_top1 whatever the objective, so this study came out backwards."""
    done = {Tags.OUTCOME: TrialOutcome.completed}
    record = _study_with_runs(
        tmp_path,
        [
            ("high", "FINISHED", done, {"val_loss": [0.9, 0.8], "val_top1": [90.0, 95.0]}),
            ("low", "FINISHED", done, {"val_loss": [0.6, 0.1, 0.4], "val_top1": [10.0, 20.0, 5.0]}),
            ("mid", "FINISHED", done, {"val_loss": [0.5, 0.3], "val_top1": [50.0, 60.0]}),
            ("none", "RUNNING", {}, {}),
        ],
        spec={"objective": {"metric": "val_loss", "mode": "min"}},
    )
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'store.db'}")
    trials = _trials(settings, record)
    assert [(t.trial_id, t.best) for t in trials] == [
        ("low", 0.1),  # its best epoch, not its last (0.4)
        ("mid", 0.3),
        ("high", 0.8),
        ("none", None),
    ]
