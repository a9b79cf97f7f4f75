"""What ends a search besides its spec's budget, on a real local Ray (`pcd study run`, as in
test_study_local): a budget raised while the study runs (budget.json, as the supervisor writes
it), an objective goal reached, and the failed-trial limit."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
from pathlib import Path

from mlflow.tracking import MlflowClient
from ray.tune.search import Searcher

from search_spaces import load_spec
from service.runner.study_limits import BudgetedLimiter, StudyLimits
from service.study_files import EXPERIMENT, StudyFolder, Tags, TrialBudget

from .conftest import VENV_BIN, cli_env, run_cli, wait_for

COMMON = [
    "--set", "teacher.epochs=1",
    "--set", "budget.max_epochs=2",
    "--set", "scheduler.type=none",
    "--set", "promotion.seeds=0",
    "--set", "concurrency=1",
    "--num-cpus", "2",
    "--quiet",
]  # fmt: skip


def _env(study_dir: Path) -> dict[str, str]:
    return cli_env(study_dir)  # the local MLflow store in the folder


def _args(study_dir: Path, *sets: str) -> list[str]:
    return ["study", "run", "pcd-digits", "--out", str(study_dir), *COMMON, *sets]


def _parent(study_dir: Path):
    client = MlflowClient(StudyFolder(study_dir).mlflow_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    return next(r for r in runs if Tags.PARENT_RUN not in r.data.tags)


def _trial_dirs(study_dir: Path) -> list[Path]:
    trials = study_dir / "trials"
    return sorted(trials.iterdir()) if trials.is_dir() else []


def test_a_budget_raised_while_the_search_runs_is_used_and_survives_a_crash(tmp_path) -> None:
    study_dir = tmp_path / "extended"
    folder = StudyFolder(study_dir)
    # eight epochs a trial: the driver is killed while the second one runs. With three, a
    # loaded machine saw it finish first, the search end (budget 2) and the resume add none
    args = _args(study_dir, "--set", "budget.trials=1", "--set", "budget.max_epochs=8")
    proc = subprocess.Popen(
        [str(VENV_BIN / "pcd"), *args],
        env=_env(study_dir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # the driver and its local Ray: killed together below
    )
    try:
        # the first (and, by the spec, only) trial has started: raise the budget to 2
        assert wait_for(lambda: _trial_dirs(study_dir) or proc.poll() is not None, 240, 0.1)
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        folder.write_budget(TrialBudget(trials=2))
        # the running driver picks it up: a second trial starts; then the driver dies
        assert wait_for(
            lambda: len(_trial_dirs(study_dir)) > 1 or proc.poll() is not None, 240, 0.1
        )
        assert proc.poll() is None, proc.communicate()[1][-3000:]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    folder.write_budget(TrialBudget(trials=3))
    # the same command resumes the study: the restored search keeps to the file's budget
    resumed = run_cli(args, _env(study_dir))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads(folder.state_file.read_text())["restored"] == 1
    summary = json.loads(folder.summary_file.read_text())
    assert len(summary["trials"]) == 3, summary["trials"]
    assert summary["stop_reason"] is None
    assert Tags.STOP_REASON not in _parent(study_dir).data.tags


def test_a_reached_goal_ends_the_search_early(tmp_path) -> None:
    study_dir = tmp_path / "goal"
    # any trial beats 1 % validation top-1 in its first epoch
    sets = ["--set", "budget.trials=4", "--set", "objective.goal=1"]
    proc = run_cli(_args(study_dir, *sets), _env(study_dir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "search ended early: goal reached by trial " in " ".join(proc.stdout.split())
    summary = json.loads(StudyFolder(study_dir).summary_file.read_text())
    assert len(summary["trials"]) == 1  # concurrency 1: the first trial reached it
    trial = summary["trials"][0]
    assert trial["epochs"] == 1  # stopped at the epoch that reached it
    reason = summary["stop_reason"]
    assert reason.startswith(f"goal reached by trial {trial['trial_id']}: val_top1 ")
    assert reason.endswith(" >= 1")
    assert summary["best_trial_id"] == trial["trial_id"]
    parent = _parent(study_dir)
    assert parent.info.status == "FINISHED" and parent.data.tags[Tags.STOP_REASON] == reason


def test_the_failed_trial_limit_fails_the_study(tmp_path) -> None:
    study_dir = tmp_path / "failing"
    # cnn_small at lr 10, momentum 0.99 diverges (NaN loss) in its first epoch
    sets = [
        "--set", "student=cnn_small",
        "--set", "training.momentum=0.99",
        "--set", "space={lr: {type: categorical, choices: [10.0]}}",
        "--set", "budget.trials=4",
        "--set", "budget.max_failed_trials=2",
        "--set", "max_failures=0",
    ]  # fmt: skip
    proc = run_cli(_args(study_dir, *sets), _env(study_dir))
    assert proc.returncode == 1
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith("error: 2 trials failed (limit 2); trial "), error
    assert "NonFiniteLoss: loss is nan at epoch 1" in error
    assert len(_trial_dirs(study_dir)) == 2  # no third trial was started
    stop = StudyFolder(study_dir).read_stop()
    assert stop is not None and stop.kind == "failed_trials" and stop.detail in error
    parent = _parent(study_dir)
    assert parent.info.status == "FAILED"
    assert parent.data.tags[Tags.ERROR] == f"StudyError: {stop.detail}"


# ------------------------------------------------------- what Tune pickles and restores
class _Points(Searcher):
    """A real (trivial) searcher: suggests {"x": n}."""

    def __init__(self) -> None:
        super().__init__(metric="val_top1", mode="max")
        self.n = 0

    def suggest(self, trial_id: str) -> dict:
        self.n += 1
        return {"x": self.n}

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
        pass


def test_the_limiter_keeps_to_the_budget_file_across_a_restore(tmp_path) -> None:
    folder = StudyFolder(tmp_path)
    limiter = BudgetedLimiter(_Points(), 4, str(tmp_path), spec_trials=2)
    assert limiter.suggest("a") == {"x": 1} and limiter.suggest("b") == {"x": 2}
    assert limiter.suggest("c") is None  # budget reached, trials still run: it may grow
    folder.write_budget(TrialBudget(trials=3))
    assert limiter.suggest("c") == {"x": 3}
    # a driver crash: Tune unpickles the limiter it started with and sets its saved state
    restored = pickle.loads(pickle.dumps(BudgetedLimiter(_Points(), 4, str(tmp_path), 2)))
    restored.set_state(limiter.get_state())
    assert restored.suggested == 3 and restored.budget() == 3  # the file, not the spec
    folder.write_budget(TrialBudget(trials=4))
    assert restored.suggest("d") == {"x": 1}
    for trial_id in ("a", "b", "c", "d"):
        restored.on_trial_complete(trial_id)
    assert restored.suggest("e") == Searcher.FINISHED  # budget used, nothing runs


def test_the_goal_and_the_failed_limit_survive_a_copy(tmp_path) -> None:
    spec = load_spec(
        "pcd-digits",
        {"objective.metric": "val_loss", "objective.mode": "min", "objective.goal": 0.5},
    )
    limits = StudyLimits(spec, str(tmp_path))
    copy = pickle.loads(pickle.dumps(limits))  # e.g. restored from the experiment
    assert not limits("t1", {"val_loss_at_best_epoch": 0.7}) and not copy.stop_all()
    assert limits("t2", {"val_loss_at_best_epoch": 0.4})  # min: at most the goal
    assert copy.stop_all()  # the decision is the study folder's
    stop = StudyFolder(tmp_path).read_stop()
    assert stop is not None and stop.kind == "goal" and stop.trial_id == "t2"
    assert stop.detail == "goal reached by trial t2: val_loss 0.4 <= 0.5"
    limits("t3", {"val_loss_at_best_epoch": 0.1})
    assert StudyFolder(tmp_path).read_stop() == stop  # the first decision stands
    state = StudyLimits(spec, str(tmp_path))
    state.set_state({"failed": {"t9": "NonFiniteLoss: nan"}})
    assert state.get_state() == {"failed": {"t9": "NonFiniteLoss: nan"}}
