"""What ends a study's search besides its spec's budget: the trial budget as changed while
the study runs (``budget.json``), the objective's goal and the failed-trial limit
(``stop.json``). Both files are the study folder's (service.study_files).

Tune fixes ``num_samples`` when a search starts, so the search is started with the most
trials a spec allows (MAX_TRIALS) and ``BudgetedLimiter`` hands out suggestions only while
fewer than the current budget were made. Whatever Tune pickles (the limiter, the stopper)
keeps its decisions in the study folder, so a restored driver goes on with them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient
from ray.tune import Callback
from ray.tune.experiment import Trial
from ray.tune.search import ConcurrencyLimiter, Searcher
from ray.tune.stopper import Stopper

from search_spaces.schema import StudySpec
from service.ranking import at_best_epoch_key
from service.runner.errors import StudyError
from service.runner.mlflow_callback import trial_error
from service.study_files import StopReason, StudyFolder, Tags

log = logging.getLogger(__name__)


class BudgetedLimiter(ConcurrencyLimiter):
    """A ConcurrencyLimiter that also stops suggesting once the study's current trial budget
    (``budget.json``, re-read when it changes; else the spec's) has been suggested. With the
    budget reached it waits (None) while trials run, since the budget may still be raised,
    and says FINISHED once none does: Tune then ends the search."""

    def __init__(
        self, searcher: Searcher, max_concurrent: int, study_dir: str, spec_trials: int
    ) -> None:
        super().__init__(searcher, max_concurrent=max_concurrent)
        self.study_dir = study_dir
        self.spec_trials = spec_trials
        self.suggested = 0  # trials started: saved with the search's state, restored with it
        self._seen: tuple[int | None, int] | None = None  # (budget.json's mtime, its trials)

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        state["_seen"] = None  # a restored limiter reads the file afresh
        return state

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_seen": None}

    def budget(self) -> int:
        """The study's current trial budget (a stat() when the file did not change)."""
        folder = StudyFolder(Path(self.study_dir))
        try:
            mtime: int | None = folder.budget_file.stat().st_mtime_ns
        except OSError:
            mtime = None
        if self._seen is None or self._seen[0] != mtime:
            changed = folder.read_budget() if mtime is not None else None
            trials = changed.trials if changed is not None else self.spec_trials
            if self._seen is not None and trials != self._seen[1]:
                log.info("trial budget changed to %d", trials)
            self._seen = (mtime, trials)
        return self._seen[1]

    def suggest(self, trial_id: str) -> dict | str | None:
        if self.suggested >= self.budget():
            return None if self.live_trials else Searcher.FINISHED
        suggestion = super().suggest(trial_id)
        if suggestion not in (None, Searcher.FINISHED):
            self.suggested += 1
        return suggestion


def _reached(value: float, goal: float, mode: str) -> bool:
    return value >= goal if mode == "max" else value <= goal


class StudyLimits(Stopper, Callback):
    """The goal and the failed-trial limit, as Tune's stopper (stop_all) and a callback
    (counting failed trials). The decision is written to ``stop.json`` once and read from
    there, so a copy of this object, or one restored after a driver crash, keeps it."""

    def __init__(self, spec: StudySpec, study_dir: str) -> None:
        self.study_dir = study_dir
        self.metric = spec.objective.metric
        self.mode = spec.objective.mode
        self.goal = spec.objective.goal
        self.max_failed = spec.budget.max_failed_trials
        self.failed: dict[str, str] = {}  # trial id -> why it failed (after its retries)
        self._stopped = False

    @property
    def folder(self) -> StudyFolder:
        return StudyFolder(Path(self.study_dir))

    def _decide(self, reason: StopReason) -> None:
        if self.folder.read_stop() is None:  # the first decision stands
            self.folder.write_stop(reason)
            log.info("search stopped: %s", reason.detail)
        self._stopped = True

    # ------------------------------------------------------------------ Stopper
    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        value = result.get(at_best_epoch_key(self.metric))
        if self.goal is None or value is None or not _reached(value, self.goal, self.mode):
            return False
        sign = ">=" if self.mode == "max" else "<="
        detail = f"goal reached by trial {trial_id}: {self.metric} {value:g} {sign} {self.goal:g}"
        self._decide(StopReason(kind="goal", trial_id=trial_id, detail=detail))
        return True

    def stop_all(self) -> bool:
        if not self._stopped and self.folder.stop_file.is_file():
            self._stopped = True
        return self._stopped

    # ------------------------------------------------------------------ Callback
    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any):
        self.failed[trial.trial_id] = trial_error(trial)
        if self.max_failed is None or len(self.failed) < self.max_failed:
            return
        n = len(self.failed)
        detail = (
            f"{n} trial{'s' if n != 1 else ''} failed (limit {self.max_failed}); "
            f"trial {trial.trial_id}: {self.failed[trial.trial_id]}"
        )
        self._decide(StopReason(kind="failed_trials", trial_id=trial.trial_id, detail=detail))

    def get_state(self) -> dict[str, Any]:
        return {"failed": dict(self.failed)}

    def set_state(self, state: dict[str, Any]) -> None:
        self.failed = dict(state.get("failed", {}))


def search_ended(folder: StudyFolder, client: MlflowClient, parent_run_id: str) -> str | None:
    """After the search: why it ended before its budget (tagged on the parent run), or None.
    StudyError when the failed-trial limit ended it: the study fails with that reason."""
    reason = folder.read_stop()
    if reason is None:
        return None
    client.set_tag(parent_run_id, Tags.STOP_REASON, reason.detail)
    if reason.kind == "failed_trials":
        raise StudyError(reason.detail)
    return reason.detail
