"""The study folder: the contract between the API, the supervisor, the study driver and the
reproduction kit.

A study lives in one folder (``<studies>/<study id>`` under the service). The supervisor writes
the spec and the attempt number and starts a driver; the driver writes the study's state, its
MLflow runs (tagged with the names in ``Tags``), its summary and, last, the attempt's outcome;
the API and ``pcd reproduce`` read them back. Every file name, file schema and tag name of that
exchange is defined here and nowhere else.

Importing this module is cheap (no Ray, MLflow, Optuna or torch): the API and the supervisor
import it.
"""

from __future__ import annotations

import enum
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from search_spaces.schema import StudySpec

EXPERIMENT = "pcd-studies"  # the MLflow experiment of every study's runs
RUNS_EXPERIMENT = "pcd-runs"  # the MLflow experiment of single runs (pcd distill, pcd teacher)
MLFLOW_DB = "mlflow.db"
# MLflow 3's UI asks which kind an experiment without this tag is (GenAI or model training);
# the view a link opens comes from its ?workflowType= (service/mlflow_links.py)
DEFAULT_EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
STANDBY_DRIVER_LOG = "standby-driver.log"  # in the studies folder: the warm driver's output
MLARTIFACTS = "mlartifacts"  # in the studies folder: artifacts of local MLflow stores


class Tags:
    """MLflow tag names of a study's runs: one parent run per study, one child per trial."""

    # MLflow's own
    PARENT_RUN = "mlflow.parentRunId"  # a trial's run -> its study's parent run
    RUN_NAME = "mlflow.runName"
    # the parent run
    STUDY = "pcd.study"  # the study folder's name
    KIND = "pcd.kind"  # a RunKind: "study" on the parent
    FIXED = "pcd.fixed"  # "true": a fixed-configuration study (no search)
    BEST_TRIAL_ID = "pcd.best_trial_id"  # the trial the study ranked first
    FAILED_TRIALS = "pcd.failed_trials"  # how many trials failed
    TRIAL_ERRORS = "pcd.trial_errors"  # JSON: trial id -> why it failed
    ORPHANED_TRIALS_FAILED = "pcd.orphaned_trials_failed"  # Optuna trials a dead driver left
    BEST_PARAM_PREFIX = "best."  # best.<param>: the best configuration
    STOP_REASON = "pcd.stop_reason"  # why the search ended before its budget (StopReason)
    # a trial's run
    TRIAL_ID = "pcd.trial_id"  # Tune's trial id
    OUTCOME = "pcd.outcome"  # a TrialOutcome
    EPOCHS = "pcd.epochs"  # epochs logged
    NODE_IP = "pcd.node_ip"  # the Ray node of its latest result
    RESTORE_NOTE = "pcd.restore_note"  # finished after Tune's last snapshot before a crash
    # either: why it failed, one line
    ERROR = "pcd.error"
    # read in the MLflow UI (docs: README "MLflow"): the winner, and a run's description
    BEST = "pcd.best"  # "true" on the run of the trial the study ranked first
    NOTE = "mlflow.note.content"  # MLflow's run description (a trial's: how it ended)
    # a comparison study's runs
    STUDY_KIND = "pcd.study_kind"  # the parent: "search" or "comparison"
    ENTRY = "pcd.entry"  # a trial's or seed run's comparison entry
    SEED_RUN = "pcd.seed_run"  # "true" on a comparison's seed runs
    # promotion, baseline and teacher runs (children without a trial id; runner.promotion)
    LABEL = "pcd.label"  # "best" or "baseline_<method>" (as StudyFolder.promotion_dir)
    SEED = "pcd.seed"  # a seed run's seed (promotion, baseline, comparison)
    MODEL_ERROR = "pcd.model_error"  # why the promoted model could not be logged
    # MLflow's system tags (the UI's user, source, commit and description)
    USER = "mlflow.user"
    SOURCE_NAME = "mlflow.source.name"
    SOURCE_TYPE = "mlflow.source.type"
    GIT_COMMIT = "mlflow.source.git.commit"


class RunKind(enum.StrEnum):
    """What a run of a study is (``Tags.KIND``); trial runs carry ``Tags.TRIAL_ID`` instead."""

    study = "study"  # the parent
    promotion = "promotion"  # the best configuration retrained on train+val, one seed
    baseline = "baseline"  # a baseline method at its defaults, one seed
    teacher = "teacher"  # the teacher the study trained


# params of every trial's run besides its configuration: the study's context (the API's trial
# config leaves them out unless the space samples a parameter of that name)
TRIAL_CONTEXT_PARAMS = (
    "method",
    "teacher",
    "student",
    "dataset",
    "max_epochs",
    "study",
    "study_id",
)


class TrialOutcome(enum.StrEnum):
    """How a trial's run ended (``Tags.OUTCOME``)."""

    completed = "completed"
    stopped_early = "stopped_early"
    failed = "failed"
    lost_in_driver_crash = "lost_in_driver_crash"


def child_runs_filter(parent_run_id: str) -> str:
    """The MLflow search filter for a study's trial runs (children with a trial id: the
    promotion, baseline and teacher runs are children of the parent run too)."""
    return f"tags.`{Tags.PARENT_RUN}` = '{parent_run_id}' and tags.`{Tags.TRIAL_ID}` IS NOT NULL"


def study_runs_filter(parent_run_id: str, kind: str) -> str:
    """The MLflow search filter for a study's child runs of one RunKind."""
    return f"tags.`{Tags.PARENT_RUN}` = '{parent_run_id}' and tags.`{Tags.KIND}` = '{kind}'"


def sqlite_uri(path: Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def mlflow_store_uri(folder: Path) -> str:
    """The URI of the SQLite MLflow store kept in ``folder`` (a study's own, or one that the
    studies under ``folder`` share, as ``pcd reproduce`` keeps)."""
    return sqlite_uri(Path(folder) / MLFLOW_DB)


@dataclass(frozen=True)
class LocalMlflowStore:
    """The one local MLflow store that studies (``pcd study run``, a service without a
    tracking server) and single runs (``pcd distill``, ``pcd teacher train``) share when no
    tracking URI is set: ``ROOT/mlflow.db`` and ``ROOT/mlartifacts/`` (ROOT:
    ``PCD_MLFLOW_LOCAL_DIR``; default ``runs``, the default studies folder's parent).
    Studies of older versions kept a store in their own folder (``StudyFolder.tracking_uri``
    still reads it)."""

    root: Path

    @property
    def db(self) -> Path:
        return Path(self.root) / MLFLOW_DB

    @property
    def uri(self) -> str:
        return sqlite_uri(self.db)

    @property
    def artifacts_uri(self) -> str:
        return (Path(self.root) / MLARTIFACTS).resolve().as_uri()


def mlflow_ui_command(store_uri: str, port: int = 5000) -> str:
    """The command that serves a local store's UI on http://127.0.0.1:PORT (its runs'
    artifacts are read from the locations the store records)."""
    return f"mlflow ui --backend-store-uri {store_uri} --port {port}"


def standby_driver_log(studies_dir: Path) -> Path:
    return Path(studies_dir) / STANDBY_DRIVER_LOG


def local_artifacts_uri(studies_dir: Path) -> str:
    """Where a local (file) MLflow store of the studies keeps its artifacts."""
    return (Path(studies_dir) / MLARTIFACTS).resolve().as_uri()


class StudyState(BaseModel):
    """``study.json``: the driver's state of a study, written as it goes (resume reads it)."""

    spec: dict[str, Any] | None = None  # the spec the folder's study runs (JSON)
    experiment_id: str | None = None
    parent_run_id: str | None = None  # set once the parent run exists
    teacher: str | None = None  # the teacher the driver trained (artifact path)
    teacher_hash: str | None = None
    restored: int = 0  # how many times Tune was restored from its experiment
    promotion: dict[str, dict[str, Any]] | None = None
    # a comparison: each entry's finished search (a restored driver does not redo it) and
    # each finished seed run's result, by entry name
    searches: dict[str, EntrySearch] = Field(default_factory=dict)
    seed_results: dict[str, list[SeedResult]] = Field(default_factory=dict)
    finished: bool = False


class TrialRow(BaseModel):
    """One trial of a finished study, as the study summary lists it."""

    trial_id: str
    status: str  # Tune's: TERMINATED or ERROR
    epochs: int
    last: float | None  # the objective at the last epoch
    best: float | None  # the trial's value: the objective at its best epoch (service.ranking)
    config: dict[str, Any]
    node_ip: str | None = None
    history: list[tuple[float, int, float]] = Field(default_factory=list)  # (time, epoch, value)
    error: str | None = None  # why it failed, one line
    entry: str | None = None  # a comparison's entry whose search ran it


class EntrySearch(BaseModel):
    """A comparison entry's finished search: its best configuration, value and trials."""

    config: dict[str, Any]
    best_value: float | None
    trials: list[TrialRow]


class SeedResult(BaseModel):
    """One seed run of a comparison entry (test metrics of pcd_core's run)."""

    seed: int
    best_epoch: int
    test_top1_best_val: float  # test top-1 of the weights selected on val
    test_top1_last: float  # test top-1 of the last epoch
    per_class_best_val: list[float]  # test accuracy per class (%), selected weights
    hard_classes: list[int] | None = None  # the teacher's hard classes on val (distillers)


class PairedResult(BaseModel):
    """An entry minus the reference, seed by seed (pcd_core.stats.PairedDifference)."""

    mean: float
    std: float
    ci95: float | None  # None with one seed
    wins: int
    n: int
    verdict: str


class MeanStdResult(BaseModel):
    mean: float
    std: float


class EntryResult(BaseModel):
    """One entry of a finished comparison."""

    name: str
    method: str
    tuning: str  # "searched", "nothing to tune" or "tuned_from <entry>"
    options: dict[str, Any]  # the options every seed ran with (tuned, fixed, inherited)
    trials: int  # search trials run (0: no search)
    max_epochs: int  # epochs of a trial and of a seed run
    best_val: float | None  # the search's best objective (val)
    seeds: list[int]
    best_epochs: list[int]
    test_top1_best_val: list[float]  # per seed: test top-1 at the best-on-val epoch
    test_top1_last: list[float]  # per seed: at the last epoch
    hard_top1: list[float]  # per seed: mean test accuracy over the hard classes
    test_top1_best_val_stats: MeanStdResult
    test_top1_last_stats: MeanStdResult
    hard_top1_stats: MeanStdResult | None
    vs_reference: PairedResult | None  # None for the reference itself


class ComparisonResult(BaseModel):
    """A comparison study's result (StudySummary.comparison)."""

    reference: str
    seeds: int
    metric: str = "test top-1 (%) at the best-on-val epoch"
    hard_classes: list[int] = Field(default_factory=list)
    hard_class_names: list[str] = Field(default_factory=list)
    entries: list[EntryResult]

    def entry(self, name: str) -> EntryResult:
        return next(e for e in self.entries if e.name == name)


class StudySummary(BaseModel):
    """``summary.json``: a finished study's result (also logged to its parent run)."""

    name: str
    study_dir: Path
    parent_run_id: str
    tracking_uri: str
    best_config: dict[str, Any]
    best_value: float | None
    best_trial_id: str | None
    trials: list[TrialRow]
    promotion: dict[str, dict[str, Any]] = Field(default_factory=dict)
    stop_reason: str | None = None  # why the search ended before its budget (StopReason)
    comparison: ComparisonResult | None = None  # a comparison study's result

    @property
    def kind(self) -> Literal["search", "comparison"]:
        return "search" if self.comparison is None else "comparison"

    def to_json(self) -> dict[str, Any]:
        # a value JSON cannot hold (e.g. a numpy integer in a config) is written as text
        return json.loads(json.dumps(self.model_dump(mode="json", fallback=str), default=str))


class Outcome(BaseModel):
    """``outcome.json``: how one attempt of a driver ended; the supervisor applies it."""

    status: Literal["succeeded", "failed"]
    error: str | None = None
    attempt: int | None = None  # the attempt that wrote it (launch.json's)


class TrialBudget(BaseModel):
    """``budget.json``: the study's search budget as changed after submit (PATCH
    /v1/studies/{id}); the supervisor writes it, the running driver re-reads it. Without the
    file the spec's budget holds."""

    trials: int = Field(ge=1)


class StopReason(BaseModel):
    """``stop.json``: why the driver ended the search before its budget, written once when
    it decided (a restored driver keeps the decision)."""

    kind: Literal["goal", "failed_trials"]
    trial_id: str  # the trial that reached the goal, or the last that failed
    detail: str  # one line, e.g. "goal reached by trial ab12: val_top1 91.2 >= 90"


class Launch(BaseModel):
    """``launch.json``: which attempt the next driver of the folder is."""

    attempt: int


def _write_atomic(path: Path, text: str) -> None:
    """Write ``path`` so that readers see the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@dataclass(frozen=True)
class StudyFolder:
    """The files of one study folder, and their typed reads and atomic writes."""

    path: Path

    # ------------------------------------------------------------------ paths
    @property
    def spec_file(self) -> Path:
        return self.path / "spec.json"

    @property
    def state_file(self) -> Path:
        return self.path / "study.json"

    @property
    def summary_file(self) -> Path:
        return self.path / "summary.json"

    @property
    def outcome_file(self) -> Path:
        return self.path / "outcome.json"

    @property
    def launch_file(self) -> Path:
        return self.path / "launch.json"

    @property
    def budget_file(self) -> Path:
        return self.path / "budget.json"

    @property
    def stop_file(self) -> Path:
        return self.path / "stop.json"

    @property
    def driver_log(self) -> Path:
        return self.path / "driver.log"

    @property
    def mlflow_db(self) -> Path:
        return self.path / MLFLOW_DB

    @property
    def mlflow_uri(self) -> str:
        """The study's own MLflow store (studies of older versions kept one)."""
        return mlflow_store_uri(self.path)

    def tracking_uri(self, local: LocalMlflowStore) -> str:
        """Where the study's runs are tracked when no tracking URI is set: its own store if
        it has one (a study of an older version), else the shared local store."""
        return self.mlflow_uri if self.mlflow_db.is_file() else local.uri

    @property
    def optuna_db(self) -> Path:
        return self.path / "optuna.db"

    @property
    def optuna_uri(self) -> str:
        """The study's own Optuna storage (when the service names none)."""
        return sqlite_uri(self.optuna_db)

    @property
    def teacher_dir(self) -> Path:
        return self.path / "teacher"

    @property
    def logit_bank_dir(self) -> Path:
        return self.path / "logit_bank"

    @property
    def tune_dir(self) -> Path:
        return self.path / "tune"

    @property
    def plots_dir(self) -> Path:
        return self.path / "plots"

    def trial_dir(self, trial_id: str) -> Path:
        """A trial's pcd_core run folder."""
        return self.path / "trials" / trial_id

    def promotion_dir(self, label: str, seed: int) -> Path:
        return self.path / "promotion" / f"{label}-s{seed}"

    def seed_run_dir(self, entry_slug: str, seed: int) -> Path:
        """A comparison entry's seed run folder."""
        return self.path / "compare" / f"{entry_slug}-s{seed}"

    @property
    def comparison_plot(self) -> Path:
        return self.plots_dir / "comparison.png"

    # ------------------------------------------------------------------ spec.json
    def write_spec(self, spec: Mapping[str, Any]) -> None:
        _write_atomic(self.spec_file, json.dumps(spec))

    def read_spec(self) -> StudySpec:
        """The spec the supervisor wrote (SpecError if it is not a valid one)."""
        from search_spaces import parse_spec  # validates against pcd_core's registries

        return parse_spec(json.loads(self.spec_file.read_text()), source=self.spec_file.name)

    # ------------------------------------------------------------------ study.json
    def read_state(self) -> StudyState | None:
        """The study's state; None before the driver wrote one (OSError, ValueError: an
        unreadable file)."""
        if not self.state_file.is_file():
            return None
        return StudyState.model_validate_json(self.state_file.read_text())

    def parent_run_id(self) -> str | None:
        """The study's MLflow parent run, once the driver has made it (None before, or while
        the state is unreadable)."""
        try:
            state = self.read_state()
        except (OSError, ValueError):
            return None
        return state.parent_run_id if state is not None else None

    def write_state(self, state: StudyState) -> None:
        _write_atomic(self.state_file, state.model_dump_json(indent=1))

    # ------------------------------------------------------------------ summary.json
    def read_summary(self) -> StudySummary | None:
        """The finished study's summary; None when there is none (OSError, ValueError: an
        unreadable file)."""
        if not self.summary_file.is_file():
            return None
        return StudySummary.model_validate_json(self.summary_file.read_text())

    def write_summary(self, summary: StudySummary) -> None:
        _write_atomic(self.summary_file, json.dumps(summary.to_json(), indent=1))

    # ------------------------------------------------------------------ outcome.json
    def write_outcome(self, outcome: Outcome) -> None:
        _write_atomic(self.outcome_file, outcome.model_dump_json())

    def read_outcome(self, attempt: int) -> Outcome | None:
        """The outcome that attempt ``attempt`` wrote, or None (none yet, unreadable, or
        another attempt's: a previous driver's outcome must not finish a resumed study)."""
        try:
            outcome = Outcome.model_validate_json(self.outcome_file.read_text())
        except (OSError, ValueError):
            return None
        return outcome if outcome.attempt == attempt else None

    def clear_outcome(self) -> None:
        """Remove the previous attempt's outcome (before a new attempt starts)."""
        self.outcome_file.unlink(missing_ok=True)

    # ------------------------------------------------------------------ budget.json
    def write_budget(self, budget: TrialBudget) -> None:
        _write_atomic(self.budget_file, budget.model_dump_json())

    def read_budget(self) -> TrialBudget | None:
        """The budget as changed after submit; None when it was not (or is unreadable)."""
        try:
            return TrialBudget.model_validate_json(self.budget_file.read_text())
        except (OSError, ValueError):
            return None

    # ------------------------------------------------------------------ stop.json
    def write_stop(self, reason: StopReason) -> None:
        _write_atomic(self.stop_file, reason.model_dump_json())

    def read_stop(self) -> StopReason | None:
        """Why the search ended early; None when it did not (yet), or the file is unreadable."""
        try:
            return StopReason.model_validate_json(self.stop_file.read_text())
        except (OSError, ValueError):
            return None

    def clear_failed_trials_stop(self) -> None:
        """Forget a failed-trial-limit stop before a new driver starts (a resume): the
        resumed search retries its failed trials, and one more failure ends it again. A goal
        reached ends a study that succeeded, so it is never resumed."""
        reason = self.read_stop()
        if reason is not None and reason.kind == "failed_trials":
            self.stop_file.unlink(missing_ok=True)

    # ------------------------------------------------------------------ launch.json
    def write_launch(self, attempt: int) -> None:
        """Tell the next driver of this folder which attempt it is."""
        _write_atomic(self.launch_file, Launch(attempt=attempt).model_dump_json())

    def read_attempt(self) -> int | None:
        try:
            return Launch.model_validate_json(self.launch_file.read_text()).attempt
        except (OSError, ValueError):
            return None
