"""Request and response models of the REST API."""

from __future__ import annotations

from datetime import UTC, datetime
from http import HTTPStatus
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from search_spaces.schema import MAX_TRIALS
from service.store import StudyStatus
from service.study_files import ComparisonResult, TrialOutcome


def _in_utc(moment: datetime) -> datetime:
    # the store writes UTC; SQLite gives it back without the zone, which a client would
    # read as its own local time (and OpenAPI's date-time format requires an offset)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_in_utc)]
# MLflow's run statuses, as a trial's run has them
RunStatus = Literal["RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"]
# A trial in the study's own words: the names of the study's trial counters (TrialCounters;
# their "pending" counts trials not started yet, which have no run to show)
TrialState = Literal["running", "completed", "stopped_early", "failed"]


class NamedSpaceRequest(BaseModel):
    """Submit a shipped search space by name, with dotted overrides."""

    model_config = ConfigDict(extra="forbid")

    search_space: str = Field(..., examples=["pcd-digits"])
    overrides: dict[str, Any] = Field(default_factory=dict, examples=[{"budget.trials": 4}])


class BudgetUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    trials: int = Field(
        ...,
        ge=1,
        le=MAX_TRIALS,
        description="the study's new search budget (raise or lower it; not below the trials "
        "already started, and within the service's limit); the running driver picks it up",
        examples=[40],
    )


class StudyUpdate(BaseModel):
    """The body of PATCH /v1/studies/{id}: what can change while a study is queued or runs."""

    model_config = ConfigDict(extra="forbid")

    budget: BudgetUpdate


class StudyLimits(BaseModel):
    """What ends the study's search: its trial budget, goal and failed-trial limit."""

    trials: int = Field(
        description="the search budget: the spec's budget.trials, or as changed since (PATCH)"
    )
    goal: float | None = Field(
        None, description="the objective's goal: the search stops once a trial reaches it"
    )
    max_failed_trials: int | None = Field(
        None, description="the study fails once this many trials have failed"
    )


class Links(BaseModel):
    self: str
    trials: str
    # MLflow UI links on PCD_MLFLOW_PUBLIC_URL (service.mlflow_links): the study's parent run
    # and its experiment (all studies, trials nested under theirs); None without a UI address
    mlflow: str | None = None
    mlflow_experiment: str | None = None


class TrialCounters(BaseModel):
    """How many of the study's trials are in each TrialState, and not started yet (pending)."""

    pending: int = 0
    running: int = 0
    completed: int = 0
    stopped_early: int = 0
    failed: int = 0


class BestTrial(BaseModel):
    trial_id: str | None = None
    value: float | None = None
    config: dict[str, Any] = Field(default_factory=dict)


class PairedDifferenceOut(BaseModel):
    """The promoted result minus a baseline's, seed by seed (pcd_core.stats)."""

    mean: float = Field(description="mean of promoted − baseline over the seeds, points")
    std: float
    ci95: float | None = Field(description="95% CI half-width; null with one seed")
    wins: int = Field(description="seeds on which the promoted result is ahead")
    n: int = Field(description="seeds paired (seed i of both: same data order and init)")
    verdict: str = Field(
        description="promoted better, <method> better or no clear difference (whether the "
        "95% interval excludes zero)"
    )


class PromotionResult(BaseModel):
    """One promoted result (``best``) or baseline (``baseline_<method>``): test top-1 of the
    last epoch over the seeds, retrained on train+val."""

    model_config = ConfigDict(extra="allow")

    mean: float
    std: float
    seeds: int
    test_top1: list[float] = Field(default_factory=list, description="one per seed")
    best_epoch: dict[str, Any] | None = Field(
        None, description="the best epoch's test top-1, selected on test (test_each_epoch)"
    )
    at_defaults: bool | None = Field(
        None,
        description="a baseline: true, it ran at its method's defaults, not tuned (`pcd "
        "compare` tunes every method with the same budget); null for the promoted result",
    )
    options: dict[str, Any] | None = Field(None, description="a baseline's method options")
    paired_vs_promoted: PairedDifferenceOut | None = None


class StudyOut(BaseModel):
    id: str
    name: str
    status: StudyStatus = Field(
        description="queued -> running -> succeeded | failed | cancelled; a failed or "
        "cancelled study can be resumed (back to queued)"
    )
    error: str | None = None
    attempts: int
    created_at: UtcDatetime
    updated_at: UtcDatetime
    started_at: UtcDatetime | None = None
    finished_at: UtcDatetime | None = None
    trials: TrialCounters = Field(default_factory=TrialCounters)
    best: BestTrial | None = None
    promotion: dict[str, PromotionResult] = Field(
        default_factory=dict, description="by label: best, baseline_<method>"
    )
    limits: StudyLimits
    stop_reason: str | None = Field(
        None,
        description="why the search ended before its budget: the goal reached by a trial, or "
        "the failed-trial limit (then also the study's error)",
    )
    stale: bool = Field(
        False, description="trials are the last known counts: MLflow did not answer just now"
    )
    links: Links
    kind: Literal["search", "comparison"] = Field(
        "search", description="a search study, or a comparison of methods (spec.comparison)"
    )
    comparison: ComparisonResult | None = Field(
        None,
        description="a finished comparison: per entry its tuned options, trials, per-seed "
        "test top-1 (best-on-val and last epoch), hard-class accuracy, and its paired "
        "difference to the reference with the 95 % interval and a verdict",
    )


class StudyPage(BaseModel):
    items: list[StudyOut]
    total: int
    offset: int
    limit: int


class TrialOut(BaseModel):
    trial_id: str
    entry: str | None = Field(None, description="a comparison's entry whose search ran it")
    state: TrialState = Field(
        description="the trial in the study's words, as counted in the study's `trials`"
    )
    status: RunStatus = Field(description="the status of the trial's MLflow run")
    outcome: TrialOutcome | None = Field(
        None, description="how the trial ended, once it did (the run's pcd.outcome tag)"
    )
    epochs: int = 0
    config: dict[str, str | int | float | bool | None] = Field(
        default_factory=dict,
        description="the trial's configuration, typed as in the study's search space",
    )
    last: dict[str, float] = Field(default_factory=dict, description="last epoch's metrics")
    best: float | None = Field(
        None,
        description="the trial's value: the study's objective at its best epoch (the highest "
        "for mode max, the lowest for min); trials are listed best first by it",
    )
    error: str | None = Field(None, description="why the trial failed (one line)")
    mlflow_run_id: str


class TrialPage(BaseModel):
    items: list[TrialOut]
    total: int
    offset: int
    limit: int
    stale: bool = Field(False, description="the last known trials: MLflow did not answer just now")


class ValidationOut(BaseModel):
    valid: bool = True
    spec: dict[str, Any]


class SearchSpaceOut(BaseModel):
    name: str
    method: str
    student: str
    description: str
    spec: dict[str, Any] | None = None


class Problem(BaseModel):
    """RFC 9457 problem details: every error the API answers."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str


PROBLEM_MEDIA_TYPE = "application/problem+json"
_PROBLEM_SCHEMA = Problem.model_json_schema()


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` declaring ``statuses`` as Problem bodies, with the media type
    the server sends (FastAPI's ``model=`` would document them as application/json)."""
    return {
        status: {
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": _PROBLEM_SCHEMA}},
        }
        for status in statuses
    }
