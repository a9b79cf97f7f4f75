"""`pcd study run` on an embedded (local) Ray, SQLite and a local MLflow store."""

from __future__ import annotations

import json
import os

from service.study_files import StudyFolder

from .conftest import run_cli

SMALL = "budget.trials=2 budget.max_epochs=2 scheduler.type=none teacher.epochs=2 promotion.seeds=0"
SETS = [arg for item in SMALL.split() for arg in ("--set", item)]


def test_local_study_from_the_command_line(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "PCD_"))}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    study_dir = tmp_path / "local"
    args = ["study", "run", "pcd-digits", "--out", str(study_dir), "--num-cpus", "2", *SETS]
    proc = run_cli(args, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "leaderboard" in proc.stdout
    summary = json.loads(StudyFolder(study_dir).summary_file.read_text())
    assert len(summary["trials"]) == 2 and all(t["epochs"] == 2 for t in summary["trials"])
    assert StudyFolder(study_dir).mlflow_db.is_file() and StudyFolder(study_dir).optuna_db.is_file()
    assert (study_dir / "teacher" / "teacher.pt").is_file()
    again = run_cli(args, env)  # a finished study is not run twice
    assert again.returncode == 1 and "holds a finished study" in again.stderr


def test_bad_spec_is_one_line_and_exit_2(tmp_path) -> None:
    proc = run_cli(["study", "run", "pcd-digits", "--set", "budget.trials=0"], dict(os.environ))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "budget.trials" in lines[0] and "Traceback" not in proc.stderr
    proc = run_cli(["study", "run", "no-such-space"], dict(os.environ))
    assert proc.returncode == 2 and "no search space named 'no-such-space'" in proc.stderr
