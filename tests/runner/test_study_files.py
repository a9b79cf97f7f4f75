"""The study-folder contract (service.study_files): cheap to import, typed, written atomically."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from service.study_files import (
    Outcome,
    StudyFolder,
    StudyState,
    StudySummary,
    TrialRow,
    mlflow_store_uri,
)

HEAVY = ("ray", "mlflow", "torch", "optuna", "sqlalchemy", "search_spaces", "pcd_core")


@pytest.mark.parametrize("module", ["service.study_files", "service.ranking"])
def test_the_contract_imports_nothing_heavy(module: str) -> None:
    """The API and the supervisor import the contract: it must not pull in the driver's stack."""
    code = f"import sys, {module}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == ""


def test_an_outcome_of_another_attempt_is_not_read(tmp_path) -> None:
    folder = StudyFolder(tmp_path)
    assert folder.read_outcome(1) is None
    folder.write_outcome(Outcome(status="failed", error="boom", attempt=1))
    assert folder.read_outcome(2) is None
    assert folder.read_outcome(1) == Outcome(status="failed", error="boom", attempt=1)
    folder.outcome_file.write_text("{half")
    assert folder.read_outcome(1) is None  # unreadable: no outcome yet
    folder.clear_outcome()
    assert not folder.outcome_file.exists()


def test_launch_attempt_round_trip(tmp_path) -> None:
    folder = StudyFolder(tmp_path)
    assert folder.read_attempt() is None
    folder.write_launch(3)
    assert folder.read_attempt() == 3
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary file, then renamed


def test_state_and_parent_run(tmp_path) -> None:
    folder = StudyFolder(tmp_path)
    assert folder.read_state() is None and folder.parent_run_id() is None
    folder.write_state(StudyState(spec={"name": "s"}, experiment_id="1", parent_run_id="p"))
    assert folder.read_state().spec == {"name": "s"}
    assert folder.parent_run_id() == "p"
    folder.state_file.write_text("not json")
    assert folder.parent_run_id() is None
    with pytest.raises(ValueError):
        folder.read_state()


def test_summary_round_trip_keeps_what_json_cannot_hold_as_text(tmp_path) -> None:
    class Odd:
        def __str__(self) -> str:
            return "odd"

    row = TrialRow(
        trial_id="t1",
        status="TERMINATED",
        epochs=2,
        last=0.5,
        best=0.4,
        config={"lr": 0.1, "what": Odd()},
        history=[(1.0, 1, 0.4), (2.0, 2, 0.5)],
    )
    summary = StudySummary(
        name="s",
        study_dir=tmp_path,
        parent_run_id="p",
        tracking_uri=mlflow_store_uri(tmp_path),
        best_config={"lr": 0.1},
        best_value=0.4,
        best_trial_id="t1",
        trials=[row],
    )
    folder = StudyFolder(tmp_path)
    folder.write_summary(summary)
    raw = json.loads(folder.summary_file.read_text())
    assert raw["trials"][0]["config"]["what"] == "odd"
    back = folder.read_summary()
    assert back.trials[0].history == [(1.0, 1, 0.4), (2.0, 2, 0.5)]
    assert back.best_trial_id == "t1" and back.study_dir == tmp_path
    assert summary.tracking_uri == f"sqlite:///{folder.mlflow_db.resolve()}"
