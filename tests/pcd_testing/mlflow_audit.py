"""What a study left in MLflow: its trials' child runs, by their ``Tags.TRIAL_ID`` tag."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.study_files import StudyFolder, Tags, child_runs_filter


@dataclass
class RunAudit:
    parent_status: str
    trials: list[str]  # the study's trials, as its summary.json lists them
    runs: dict[str, list[str]]  # trial id -> statuses of its active child runs
    restore_notes: set[str] = field(default_factory=set)  # kept runs of lost trials
    deleted: int = 0  # child runs deleted (soft) by a restored driver
    parents: int = 1  # the study's parent runs (a relaunched driver must reuse its own)

    @property
    def duplicated(self) -> list[str]:
        return sorted(t for t, statuses in self.runs.items() if len(statuses) > 1)

    @property
    def lost(self) -> list[str]:
        return sorted(set(self.trials) - set(self.runs))

    @property
    def running(self) -> list[str]:
        return sorted(t for t, statuses in self.runs.items() if "RUNNING" in statuses)

    @property
    def unexplained(self) -> list[str]:
        """Runs of no trial of the study, other than those a restore kept and tagged."""
        return sorted(set(self.runs) - set(self.trials) - self.restore_notes)

    def figures(self) -> dict[str, Any]:
        return {
            "trials": len(self.trials),
            "child_runs": sum(len(v) for v in self.runs.values()),
            "runs_lost": len(self.lost),
            "runs_duplicated": len(self.duplicated),
            "runs_left_running": len(self.running),
            "runs_deleted_by_restore": self.deleted,
            "runs_kept_with_restore_note": len(self.restore_notes),
        }

    def assert_one_run_per_trial(self, trials: int) -> None:
        assert len(self.trials) == trials, self
        assert self.parent_status == "FINISHED", self
        assert self.parents == 1, self
        assert not self.lost and not self.duplicated and not self.running, self
        assert not self.unexplained, self


def audit(tracking_uri: str, study_dir: Path) -> RunAudit:
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    folder = StudyFolder(study_dir)
    state, summary = folder.read_state(), folder.read_summary()
    client = MlflowClient(tracking_uri)
    parent = state.parent_run_id
    query = child_runs_filter(parent)
    active = client.search_runs([state.experiment_id], query, max_results=5000)
    every = client.search_runs(
        [state.experiment_id], query, run_view_type=ViewType.ALL, max_results=5000
    )
    parents = client.search_runs(
        [state.experiment_id], f"tags.`{Tags.STUDY}` = '{folder.path.name}'", max_results=100
    )
    runs: dict[str, list[str]] = {}
    notes = set()
    for run in active:
        trial = run.data.tags.get(Tags.TRIAL_ID, "?")
        runs.setdefault(trial, []).append(run.info.status)
        if Tags.RESTORE_NOTE in run.data.tags:
            notes.add(trial)
    return RunAudit(
        parent_status=client.get_run(parent).info.status,
        trials=[t.trial_id for t in summary.trials] if summary else [],
        runs=runs,
        restore_notes=notes,
        deleted=len(every) - len(active),
        parents=len(parents),
    )
