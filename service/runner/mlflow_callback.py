"""Study tracking in MLflow: one parent run per study, one child run per trial.

Written for restores: the trial-to-run map lives in MLflow itself (a ``Tags.TRIAL_ID`` tag
under the parent), so a restored driver finds and continues a trial's run instead of
creating a second one, and skips epochs it already logged. The stock MLflowLoggerCallback
neither nests nor survives a restore. What a trial's run shows besides its metrics (name,
context params, best values, description, artifacts) is service.runner.trial_runs'.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, cast

import cloudpickle
from mlflow.entities import Metric, RunStatus, RunTag
from mlflow.tracking import MlflowClient
from ray.tune import Callback
from ray.tune.experiment import Trial

from service.runner.errors import one_line
from service.runner.tracking import RetryingClient, system_tags
from service.runner.trial_runs import (
    TrialRunInfo,
    best_metrics,
    final_name,
    log_trial_files,
    missing_params,
    outcome_note,
    run_name,
    trial_ordinal,
)
from service.study_files import Tags, TrialOutcome, child_runs_filter

MAX_NOTE = 5000  # characters of a run's description (an MLflow tag holds 8000)
# Tune's own bookkeeping keys, not metrics of the run
_SKIP = {
    "epoch",
    "training_iteration",
    "time_this_iter_s",
    "time_total_s",
    "timestamp",
    "time_since_restore",
    "iterations_since_restore",
    "pid",
    "done",
    "checkpoint_dir_name",
    "student_params",
}


class MLflowStudyCallback(Callback):
    """Driver-side: creates, resumes and closes the child runs of the trials."""

    def __init__(
        self,
        tracking_uri: str,
        experiment_id: str,
        parent_run_id: str,
        info: TrialRunInfo,
        entry: str | None = None,
    ) -> None:
        self.entry = entry  # a comparison entry: its trials' runs only (tagged Tags.ENTRY)
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.info = info
        self._runs: dict[str, str] = {}
        self._logged: dict[str, int] = {}
        self._nodes: dict[str, str] = {}
        self._client: MlflowClient | None = None
        self._reconciled = False

    def __getstate__(self) -> dict[str, Any]:  # pickled with the experiment: no client
        state = self.__dict__.copy()
        state["_client"] = None
        state["_runs"] = {}
        state["_logged"] = {}
        state["_nodes"] = {}
        state["_reconciled"] = False
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:  # experiments pickled before entry
        self.__dict__.update({"entry": None, **state})

    def _children(self) -> str:
        """The filter of this search's trial runs (of its entry in a comparison)."""
        base = child_runs_filter(self.parent_run_id)
        return base if self.entry is None else f"{base} and tags.`{Tags.ENTRY}` = '{self.entry}'"

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = cast(MlflowClient, RetryingClient(self.tracking_uri))
        return self._client

    def run_id(self, trial: Trial) -> str:
        """The child run of ``trial``: found by tag (after a restore) or created."""
        if trial.trial_id in self._runs:
            return self._runs[trial.trial_id]
        found = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"{self._children()} and tags.`{Tags.TRIAL_ID}` = '{trial.trial_id}'",
            max_results=1,
        )
        if found:
            run_id, existing = found[0].info.run_id, found[0].data.params
            history = self.client.get_metric_history(run_id, "val_top1")
            self._logged[trial.trial_id] = max((m.step for m in history), default=0)
            if found[0].info.status != "RUNNING":
                self.client.update_run(run_id, status="RUNNING")
        else:
            run = self.client.create_run(
                self.experiment_id,
                tags={
                    Tags.PARENT_RUN: self.parent_run_id,
                    Tags.TRIAL_ID: trial.trial_id,
                    Tags.RUN_NAME: self.name(trial),
                    **system_tags(),  # who, what and which commit, as the study's other runs
                    **({} if self.entry is None else {Tags.ENTRY: self.entry}),
                },
            )
            run_id, existing = run.info.run_id, {}
            self._logged[trial.trial_id] = 0
        # (also after a restore: a driver that died between creating and filling the run)
        params = missing_params(existing, self._params(trial))
        if params:
            self.client.log_batch(run_id, params=params)
        self._runs[trial.trial_id] = run_id
        return run_id

    def name(self, trial: Trial) -> str:
        """The trial run's readable name (trial_runs.run_name), the same after a restore."""
        ordinal = trial_ordinal(trial.experiment_tag)
        name = run_name(ordinal, trial.trial_id, self._config(trial), self.info)
        return name if self.entry is None else f"{self.entry} {name}"

    @staticmethod
    def _config(trial: Trial) -> dict[str, Any]:
        return {k: v for k, v in (trial.config or {}).items() if not k.startswith("_")}

    def _params(self, trial: Trial) -> dict[str, Any]:
        """The trial's configuration and the study's context (a sampled name wins)."""
        return {**self.info.context, **self._config(trial)}

    def on_step_begin(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        if not self._reconciled:
            self._reconcile({t.trial_id for t in trials})
            self._reconciled = True

    def _reconcile(self, known: set[str]) -> None:
        """After a driver crash, Tune restores its last snapshot: a trial started after it is
        gone from the experiment and will be sampled again. Its unfinished run is deleted
        (soft, restorable in MLflow) so that no trial is counted twice; a run that finished
        is kept and tagged."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=self._children(),
            max_results=10000,
        )
        for run in runs:
            trial_id = run.data.tags.get(Tags.TRIAL_ID)
            if trial_id is None or trial_id in known:
                continue
            if run.info.status == "FINISHED":
                self.client.set_tag(
                    run.info.run_id,
                    Tags.RESTORE_NOTE,
                    "finished before a driver crash, after Tune's last snapshot",
                )
            else:
                self.client.set_tag(
                    run.info.run_id, Tags.OUTCOME, TrialOutcome.lost_in_driver_crash
                )
                self.client.set_terminated(run.info.run_id, status="KILLED")
                self.client.delete_run(run.info.run_id)

    def on_trial_start(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self.run_id(trial)

    def on_trial_restore(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self.run_id(trial)

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict[str, Any], **info: Any
    ) -> None:
        run_id = self.run_id(trial)
        self._tag_node(trial, run_id, result.get("node_ip"))
        epoch = int(result.get("epoch", result.get("training_iteration", 0)))
        if epoch <= self._logged.get(trial.trial_id, 0):
            return  # already logged before a restore
        ts = int(result.get("timestamp", 0)) * 1000
        metrics = [
            Metric(key, float(value), ts, epoch)
            for key, value in result.items()
            if key not in _SKIP
            and isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(float(value))
        ]
        if metrics:
            self.client.log_batch(run_id, metrics=metrics)
        self._logged[trial.trial_id] = epoch

    def _tag_node(self, trial: Trial, run_id: str, node: Any) -> None:
        """Which node ran the trial (again after a reschedule): set when it changes."""
        if node and self._nodes.get(trial.trial_id) != node:
            self.client.set_tag(run_id, Tags.NODE_IP, str(node))
            self._nodes[trial.trial_id] = str(node)

    def _finish(self, trial: Trial, status: str, error: str | None = None) -> None:
        run_id = self.run_id(trial)
        if error is not None:
            self.client.set_tag(run_id, Tags.ERROR, error)
        epochs = self._logged.get(trial.trial_id, 0)
        of = self.info.trial_epochs(self._config(trial))
        outcome = (
            TrialOutcome.failed
            if status == "FAILED"
            else (TrialOutcome.completed if epochs >= of else TrialOutcome.stopped_early)
        )
        # a failed trial's epochs do not count (service.ranking): no best values
        best = {} if outcome == TrialOutcome.failed else self._log_best(run_id)
        note = outcome_note(outcome, epochs, of, self.info.scheduler, best, error)
        tags = {Tags.OUTCOME: outcome, Tags.EPOCHS: str(epochs), Tags.NOTE: note[:MAX_NOTE]}
        self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        self.client.update_run(run_id, name=final_name(self.name(trial), outcome, epochs))
        log_trial_files(self.client, run_id, self.info.trial_dir(trial.trial_id), self.info)
        self.client.set_terminated(run_id, status=status)

    def _log_best(self, run_id: str) -> dict[str, float]:
        best = best_metrics(self.client, run_id, self.info.objectives)
        now = int(time.time() * 1000)
        if best:
            self.client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in best.items()])
        return best

    def on_trial_complete(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self._finish(trial, RunStatus.to_string(RunStatus.FINISHED))

    def on_trial_error(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self._finish(trial, RunStatus.to_string(RunStatus.FAILED), trial_error(trial))


def trial_error(trial: Trial) -> str:
    """Why a trial failed, one line (its exception, as the trial raised it), from the error
    files Tune has just written to the trial's local folder (not yet to its storage)."""
    pickled, text = trial.pickled_error_file, trial.error_file
    try:
        if pickled and Path(pickled).is_file():
            return one_line(cloudpickle.loads(Path(pickled).read_bytes()))
        if text and Path(text).is_file():
            return one_line(Path(text).read_text())
    except Exception as err:  # an unreadable error file: say so rather than fail the study
        return f"error not readable: {one_line(err)}"
    return "unknown error"
