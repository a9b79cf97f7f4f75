"""The study driver: teacher once, logit bank once, a Ray Tune search (Optuna sampler, ASHA),
MLflow tracking, crash-safe restore, and promotion of the best configuration.

Run one driver per study, in its own process (two ``ray.init`` in one process clash).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import optuna
import ray
from mlflow.tracking import MlflowClient
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search.optuna import OptunaSearch

from pcd_core.data import load_dataset
from pcd_core.methods import needs_teacher
from pcd_core.models import build_model, count_parameters
from pcd_core.train import TrainConfig, load_teacher, prefill_logit_bank
from search_spaces.schema import MAX_TRIALS, StudySpec
from service.ranking import at_best_epoch_key, best_value, ranked
from service.runner.errors import StudyError, one_line
from service.runner.mlflow_callback import MLflowStudyCallback
from service.runner.promotion import log_promotion, log_study_inputs, parent_tags, promote
from service.runner.remote import remote_opts, train_remote
from service.runner.resources import check_resources
from service.runner.space import define_by_run, make_sampler
from service.runner.study_limits import BudgetedLimiter, StudyLimits, search_ended
from service.runner.study_plots import log_study_plots
from service.runner.tracking import RetryingClient, local_tracking_uri
from service.runner.trainable import TrialContext, run_trial, trial_config
from service.runner.trial_runs import TrialRunInfo, mark_best
from service.settings import RunnerSettings
from service.study_files import (
    EXPERIMENT,
    RunKind,
    StudyFolder,
    StudyState,
    StudySummary,
    Tags,
    TrialOutcome,
    TrialRow,
    child_runs_filter,
    local_artifacts_uri,
)

log = logging.getLogger(__name__)

MAX_TAG = 5000  # characters of an MLflow tag value written here (MLflow takes 8000)


def _resolve_under(root: Path | None, name: str, what: str) -> Path:
    base = (root or Path.cwd()).resolve()
    path = (base / name).resolve()
    if not path.is_relative_to(base):
        raise StudyError(f"{what} {name!r} escapes its root {base}")
    return path


def init_ray(settings: RunnerSettings) -> None:
    """Join the cluster at ``settings.ray_address``, or start a local Ray (once a process)."""
    # checkpoints every epoch are the point here; Tune's warning about them is noise
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # snapshot the experiment every second: a driver crash loses at most that much
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")
    if ray.is_initialized():
        return
    if settings.ray_address:
        ray.init(address=settings.ray_address, log_to_driver=False)
    else:
        ray.init(
            num_cpus=settings.num_cpus or os.cpu_count(),
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )


class _TrialTimeline(tune.Callback):
    """Marks the first trial's start and first result in the driver's timeline."""

    def __init__(self, phase: Callable[[str], None]) -> None:
        self.phase: Callable[[str], None] | None = phase
        self.seen: set[str] = set()

    def __getstate__(self) -> dict[str, Any]:  # pickled with the experiment: no callable
        return {"phase": None, "seen": set(self.seen)}

    def _once(self, event: str) -> None:
        if event not in self.seen and self.phase is not None:
            self.seen.add(event)
            self.phase(event)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._once("first trial started")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info):
        self._once("first trial result")


@ray.remote(num_cpus=0)
def _warm_worker() -> int:
    """Import what a trial imports, so that a worker process is ready for one."""
    import torch  # noqa: F401

    import pcd_core.train  # noqa: F401
    import service.runner.trainable  # noqa: F401

    return os.getpid()


def warm_up(settings: RunnerSettings, workers: int = 2) -> None:
    """Connect to Ray (or start the local one) and start ``workers`` worker processes with
    the trial code imported: a warm driver does this before its study arrives."""
    init_ray(settings)
    ray.get([_warm_worker.remote() for _ in range(workers)])


@ray.remote
def _prefill_remote(config_json: dict[str, Any]) -> int:
    return prefill_logit_bank(TrainConfig.model_validate(config_json))


@dataclass
class _StateFile:
    """A study's state (study.json) and its folder: the driver updates ``data`` and saves."""

    folder: StudyFolder
    data: StudyState

    @classmethod
    def load(cls, folder: StudyFolder) -> _StateFile:
        return cls(folder, folder.read_state() or StudyState())

    def save(self) -> None:
        self.folder.write_state(self.data)


def ensure_experiment(client: MlflowClient, studies_dir: Path) -> str:
    """The id of the studies' MLflow experiment, created when missing (artifacts of a local
    store go to ``studies_dir/mlartifacts``)."""
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is not None:
        return experiment.experiment_id
    # a tracking server stores artifacts itself (proxied); a local store next to the study
    local = not client.tracking_uri.startswith(("http://", "https://"))
    location = local_artifacts_uri(studies_dir) if local else None
    return client.create_experiment(EXPERIMENT, artifact_location=location)


def _parent_run(
    client: MlflowClient, state: _StateFile, spec: StudySpec, study_dir: Path
) -> tuple[str, str]:
    experiment_id = ensure_experiment(client, study_dir.parent)
    run_id = state.data.parent_run_id
    if run_id is None:
        run = client.create_run(
            experiment_id,
            tags={
                Tags.RUN_NAME: spec.name,
                Tags.STUDY: study_dir.name,
                Tags.KIND: RunKind.study,
                **parent_tags(spec, study_dir.name),
            },
        )
        run_id = run.info.run_id
        client.log_dict(run_id, spec.model_dump(mode="json"), state.folder.spec_file.name)
        client.log_param(run_id, "method", spec.method)
        client.log_param(run_id, "student", spec.student)
        client.log_param(run_id, "dataset", spec.data.name)
        client.log_param(run_id, "sampler", spec.sampler.type)
        client.log_param(run_id, "scheduler", spec.scheduler.type)
        client.log_param(run_id, "trials", spec.budget.trials)
        client.log_param(run_id, "max_epochs", spec.budget.max_epochs)
        client.log_param(run_id, "space", json.dumps(spec.model_dump(mode="json")["space"]))
        state.data.parent_run_id, state.data.experiment_id = run_id, experiment_id
        state.save()
    else:
        client.update_run(run_id, status="RUNNING")
    return experiment_id, run_id


def _teacher(
    spec: StudySpec, settings: RunnerSettings, study_dir: Path, state: _StateFile
) -> tuple[str | None, str | None]:
    """Train (once) or load-and-verify the study's teacher."""
    if not needs_teacher(spec.method):
        return None, None
    if spec.teacher.checkpoint is not None:
        path = _resolve_under(settings.teacher_root, spec.teacher.checkpoint, "teacher")
        _, info = load_teacher(path, expected_hash=spec.teacher.hash)
        return str(path), info.content_hash
    if state.data.teacher is not None:
        return state.data.teacher, state.data.teacher_hash
    config = TrainConfig(
        data={
            "name": spec.data.name,
            "root": _data_root(spec, settings),
            "val_fraction": spec.data.val_fraction,
            "seed": spec.data.seed,
            **spec.data.model_dump(include={"augment", "image_size"}),
        },
        arch=spec.teacher.arch,
        epochs=spec.teacher.epochs,
        lr=spec.teacher.lr,
        seed=spec.seed,
    )
    out = ray.get(
        train_remote.options(**remote_opts(spec)).remote(
            config.model_dump(mode="json"), str(state.folder.teacher_dir)
        )
    )
    state.data.teacher, state.data.teacher_hash = out["teacher_artifact"], out["teacher_hash"]
    state.save()
    return out["teacher_artifact"], out["teacher_hash"]


def _data_root(spec: StudySpec, settings: RunnerSettings) -> str | None:
    if spec.data.root is None:
        return None
    return str(_resolve_under(settings.data_root, spec.data.root, "data folder"))


def _student_params(spec: StudySpec, data_root: str | None) -> int:
    # the size the trials train at: the spec's image_size when it resizes an image folder
    size = {"image_size": spec.data.image_size} if spec.data.image_size is not None else {}
    data = load_dataset(spec.data.name, "test", data_root, **size)
    model = build_model(spec.student, data.num_classes, data.channels, data.image_size[0])
    return count_parameters(model)


class RestorableOptunaSearch(OptunaSearch):
    """OptunaSearch that survives a driver crash: after a restore, Tune's snapshot can be a
    moment older than the Optuna storage, so a trial it resumes may already be finished
    there; reporting to it again must not stop the study."""

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        try:
            super().on_trial_result(trial_id, result)
        except optuna.exceptions.UpdateFinishedTrialError:
            log.info("trial %s already finished in the Optuna storage", trial_id)


def make_searcher(spec: StudySpec, storage: str, study_name: str) -> RestorableOptunaSearch:
    """The study's Optuna searcher. It is given each objective at the trial's best epoch
    (service.ranking; the trainable reports them), so that Optuna's value of a trial, which
    optuna-dashboard shows, is the one pcd ranks it by, not its last epoch's."""
    objectives = [spec.objective, *([spec.second_objective] if spec.second_objective else [])]
    metrics = [at_best_epoch_key(o.metric) for o in objectives]
    modes = [o.mode for o in objectives]
    return RestorableOptunaSearch(
        space=define_by_run(spec),
        metric=metrics if len(metrics) > 1 else metrics[0],
        mode=modes if len(modes) > 1 else modes[0],
        sampler=make_sampler(spec),
        study_name=study_name,
        storage=optuna.storages.RDBStorage(storage),
        seed=spec.seed,
    )


def _fail_orphans(storage: str, study_name: str) -> int:
    """Mark trials left RUNNING in the Optuna storage by a dead driver as FAIL."""
    study = optuna.load_study(study_name=study_name, storage=storage)
    orphans = [
        t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.RUNNING
    ]
    for t in orphans:
        study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
    return len(orphans)


@dataclass(frozen=True)
class _Tracking:
    """Where a study's runs are tracked: its MLflow client and parent run."""

    client: MlflowClient
    uri: str
    experiment_id: str
    parent_run_id: str


def run_study(
    spec: StudySpec,
    study_dir: Path,
    settings: RunnerSettings | None = None,
    *,
    callbacks: list[tune.Callback] | None = None,
    on_phase: Callable[[str], None] | None = None,
) -> StudySummary:
    """Run (or resume, if ``study_dir`` holds a started study) a study to the end.

    Raises StudyError when no trial completed; on any failure the parent run and the trial
    runs left running are closed as FAILED with the reason (pcd.error)."""
    settings = settings or RunnerSettings()
    study_dir = Path(study_dir).resolve()
    study_dir.mkdir(parents=True, exist_ok=True)
    phase = on_phase or (lambda _msg: None)
    folder = StudyFolder(study_dir)
    state = _StateFile.load(folder)
    spec_json = spec.model_dump(mode="json")
    if state.data.spec not in (None, spec_json):
        raise StudyError(f"{study_dir} holds a study with another spec; use a new folder")
    if state.data.finished:
        raise StudyError(
            f"{study_dir} holds a finished study (results in {folder.summary_file}); "
            "use another study folder to run it again"
        )
    state.data.spec = spec_json
    state.save()

    local_dir = settings.mlflow_local_dir or study_dir.parent
    tracking_uri = settings.tracking_uri or local_tracking_uri(folder, local_dir)
    phase("tracking")
    client = cast(MlflowClient, RetryingClient(tracking_uri))  # rides out MLflow outages
    experiment_id, parent_run_id = _parent_run(client, state, spec, study_dir)
    tracking = _Tracking(client, tracking_uri, experiment_id, parent_run_id)
    try:
        return _run_tracked(spec, study_dir, settings, state, tracking, callbacks, phase)
    except Exception as err:
        close_failed_runs(tracking, one_line(err))
        raise


def _run_tracked(
    spec: StudySpec,
    study_dir: Path,
    settings: RunnerSettings,
    state: _StateFile,
    tracking: _Tracking,
    callbacks: list[tune.Callback] | None,
    phase: Callable[[str], None],
) -> StudySummary:
    phase("ray")
    init_ray(settings)
    check_resources(spec, may_grow=settings.cluster_autoscales)
    if spec.comparison is not None:
        from service.runner.comparison import run_comparison

        return run_comparison(spec, settings, state, tracking, callbacks, phase)
    ctx = _context(spec, settings, state, tracking, phase)
    if spec.is_fixed:
        return _finish_fixed(spec, ctx, tracking, state, phase)
    return _search(spec, ctx, settings, state, tracking, callbacks, phase)


def _context(
    spec: StudySpec,
    settings: RunnerSettings,
    state: _StateFile,
    tracking: _Tracking,
    phase: Callable[[str], None],
) -> TrialContext:
    """What the study's runs share: the teacher (trained once or verified), the data root,
    the logit bank (filled once); the data and the teacher logged to the parent run."""
    study_dir = state.folder.path
    phase("teacher")
    teacher, teacher_hash = _teacher(spec, settings, study_dir, state)
    data_root = _data_root(spec, settings)
    log_study_inputs(tracking, spec, state.folder, data_root, teacher)
    logit_bank = settings.logit_bank_root or state.folder.logit_bank_dir
    ctx = TrialContext(
        spec_json=spec.model_dump(mode="json"),
        teacher=teacher,
        teacher_hash=teacher_hash,
        data_root=data_root,
        logit_bank=str(logit_bank) if teacher else None,
        student_params=_student_params(spec, data_root),
        study_dir=str(study_dir),
    )
    if teacher:
        phase("logit bank")
        # a fixed study only trains on the whole training split (the promotion's runs)
        probe = trial_config(ctx, {}, val_fraction=0.0 if spec.is_fixed else None)
        ray.get(_prefill_remote.options(**remote_opts(spec)).remote(probe.model_dump(mode="json")))
    return ctx


def _search(
    spec: StudySpec,
    ctx: TrialContext,
    settings: RunnerSettings,
    state: _StateFile,
    tracking: _Tracking,
    callbacks: list[tune.Callback] | None,
    phase: Callable[[str], None],
) -> StudySummary:
    """The search, its ranking and the promotion of its best configuration."""
    phase("search")
    storage = settings.optuna_storage or state.folder.optuna_uri
    study_name = f"{spec.name}-{state.folder.path.name}"
    tuner, restored = _tuner(spec, ctx, settings, tracking, storage, study_name, callbacks, phase)
    state.data.restored += int(restored)
    state.save()
    grid = tuner.fit()
    orphans = _fail_orphans(storage, study_name)
    t = tracking
    t.client.set_tag(t.parent_run_id, Tags.ORPHANED_TRIALS_FAILED, str(orphans))
    rows = [_trial_row(result, spec.objective.metric, spec.objective.mode) for result in grid]
    _log_trial_failures(t.client, t.parent_run_id, rows)
    stop_reason = search_ended(state.folder, t.client, t.parent_run_id)  # goal, failed limit
    best_row = _best_row(rows, spec.objective.mode)
    if best_row is None:
        raise StudyError(no_trial_completed(rows))
    _log_best(t, spec.objective.metric, best_row)
    result = StudySummary(
        name=spec.name,
        study_dir=state.folder.path,
        parent_run_id=t.parent_run_id,
        tracking_uri=t.uri,
        best_config=best_row.config,
        best_value=best_row.best,
        best_trial_id=best_row.trial_id,
        trials=rows,
        stop_reason=stop_reason,
    )
    phase("promotion")
    result.promotion = _promote(spec, ctx, best_row.config, state, t)
    _log_plots(t, storage, study_name, best_row.trial_id, spec, state.folder)
    _write_summary(t.client, result, state)
    return result


def _log_best(t: _Tracking, metric: str, best: TrialRow) -> None:
    """The parent run names the best trial, its value and its configuration (tags, and
    params for the runs table); the best trial's run is tagged (trial_runs.mark_best)."""
    client, run_id = t.client, t.parent_run_id
    client.set_tag(run_id, Tags.BEST_TRIAL_ID, str(best.trial_id))
    client.log_metric(run_id, f"best_{metric}", float(best.best))  # type: ignore[arg-type]
    for key, value in best.config.items():
        client.set_tag(run_id, f"{Tags.BEST_PARAM_PREFIX}{key}", str(value))
    mark_best(client, t.experiment_id, run_id, best)


def _tuner(
    spec: StudySpec,
    ctx: TrialContext,
    settings: RunnerSettings,
    tracking: _Tracking,
    storage: str,
    study_name: str,
    callbacks: list[tune.Callback] | None,
    phase: Callable[[str], None],
    *,
    experiment: str = "search",
    entry: str | None = None,
) -> tuple[tune.Tuner, bool]:
    """The study's Tuner, restored from its experiment when there is one (and whether).
    A comparison runs one per tuned entry: ``experiment`` names its Tune experiment and
    ``entry`` tags its trial runs."""
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, ctx=ctx),
        {"cpu": spec.resources.cpus, "gpu": spec.resources.gpus},
    )
    # Tune's storage: the study folder, or a URI shared by every node (e.g. s3://bucket/tune)
    study_dir = Path(ctx.study_dir)
    storage_path = (
        f"{settings.tune_storage.rstrip('/')}/{study_dir.name}"
        if settings.tune_storage
        else str(StudyFolder(study_dir).tune_dir)
    )
    experiment_path = f"{storage_path}/{experiment}"
    if tune.Tuner.can_restore(experiment_path):
        tuner = tune.Tuner.restore(
            experiment_path, trainable=trainable, resume_errored=True, restart_errored=False
        )
        return tuner, True
    searcher = make_searcher(spec, storage, study_name)
    scheduler = (
        ASHAScheduler(
            time_attr="epoch",
            metric=spec.objective.metric,
            mode=spec.objective.mode,
            max_t=spec.budget.max_epochs,
            grace_period=spec.scheduler.grace_period,
            reduction_factor=spec.scheduler.reduction_factor,
        )
        if spec.scheduler.type == "asha"
        else FIFOScheduler()
    )
    mlflow_callback = MLflowStudyCallback(
        tracking.uri,
        tracking.experiment_id,
        tracking.parent_run_id,
        TrialRunInfo.from_spec(spec, study_dir, settings.trial_checkpoint_max_mb),
        entry=entry,
    )
    # the budget may be raised while the search runs: the limiter keeps to the current one
    limiter = BudgetedLimiter(searcher, spec.concurrency, str(study_dir), spec.budget.trials)
    limits = StudyLimits(spec, str(study_dir))  # the goal and the failed-trial limit
    # Tune's new console output ignores verbose=0 and prints a box with num_samples (10000,
    # the limiter's ceiling, not the budget); the driver reports its own progress
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=limiter,
            scheduler=scheduler,
            num_samples=MAX_TRIALS,
            time_budget_s=spec.budget.time_limit_s,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=experiment,
            storage_path=storage_path,
            stop=limits,
            callbacks=[mlflow_callback, _TrialTimeline(phase), limits, *(callbacks or [])],
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            verbose=0,
        ),
    )
    return tuner, False


def _trial_row(result: Any, metric: str, mode: str) -> TrialRow:
    """One trial's row from its Tune result: its history of ``metric`` and, if it failed,
    why (one line)."""
    history = result.metrics_dataframe
    values = history[metric].tolist() if history is not None and metric in history else []
    best = best_value(values, mode)
    timeline = (
        list(zip(history["timestamp"], history["epoch"], values, strict=False))
        if values and "timestamp" in history and "epoch" in history
        else []
    )
    return TrialRow(
        trial_id=str(result.metrics.get("trial_id", "")),
        status="ERROR" if result.error else "TERMINATED",
        epochs=int(result.metrics.get("epoch", 0) or 0),
        last=result.metrics.get(metric),
        best=best,
        config={k: v for k, v in result.config.items() if not k.startswith("_")},
        node_ip=result.metrics.get("node_ip"),
        history=[(float(t), int(e), float(v)) for t, e, v in timeline],
        error=one_line(result.error) if result.error else None,
    )


def _best_row(rows: list[TrialRow], mode: str) -> TrialRow | None:
    """The best trial that did not fail (a failed trial's earlier epochs do not count)."""
    scored = ranked([r for r in rows if r.error is None], lambda r: r.best, mode)  # type: ignore[arg-type]
    return scored[0] if scored and scored[0].best is not None else None


def no_trial_completed(rows: list[TrialRow]) -> str:
    """Why a study has no best trial, one line."""
    failed = [r for r in rows if r.error is not None]
    if not rows:
        return "no trial completed: no trial ran"
    reason = f"no trial completed: {len(failed)} of {len(rows)} trials failed"
    if failed:
        reason += f"; trial {failed[0].trial_id}: {failed[0].error}"
    return reason


def _log_trial_failures(client: MlflowClient, run_id: str, rows: list[TrialRow]) -> None:
    """The parent run's count of failed trials and their reasons (pcd.trial_errors: JSON,
    trial id to reason, clipped to what an MLflow tag holds)."""
    errors = {r.trial_id: r.error for r in rows if r.error is not None}
    client.set_tag(run_id, Tags.FAILED_TRIALS, str(len(errors)))
    if errors:
        client.set_tag(run_id, Tags.TRIAL_ERRORS, json.dumps(errors)[:MAX_TAG])


def close_failed_runs(tracking: _Tracking, error: str) -> None:
    """After a study failed: its parent run FAILED with the reason, and trial runs it left
    RUNNING FAILED too. Best effort, without retries: MLflow itself may be why the study
    failed."""
    t, client = tracking, MlflowClient(tracking.uri)
    try:
        client.set_tag(t.parent_run_id, Tags.ERROR, error[:MAX_TAG])
        client.set_terminated(t.parent_run_id, status="FAILED")
        running = client.search_runs(
            [t.experiment_id],
            filter_string=f"{child_runs_filter(t.parent_run_id)} and attributes.status = 'RUNNING'",
            max_results=10000,
        )
        for run in running:
            client.set_tag(run.info.run_id, Tags.OUTCOME, TrialOutcome.failed)
            client.set_tag(run.info.run_id, Tags.ERROR, f"study failed: {error}"[:MAX_TAG])
            client.set_terminated(run.info.run_id, status="FAILED")
    except Exception:
        log.warning("could not close the study's MLflow runs", exc_info=True)


def _write_summary(client: MlflowClient, result: StudySummary, state: _StateFile) -> None:
    client.log_dict(result.parent_run_id, result.to_json(), state.folder.summary_file.name)
    client.set_terminated(result.parent_run_id, status="FINISHED")
    state.folder.write_summary(result)
    state.data.finished = True
    state.save()


def _finish_fixed(
    spec: StudySpec,
    ctx: TrialContext,
    tracking: _Tracking,
    state: _StateFile,
    phase: Callable[[str], None],
) -> StudySummary:
    """A fixed-configuration study: no search; the fixed point is trained over the seeds."""
    config = spec.fixed_config()
    client, parent_run_id = tracking.client, tracking.parent_run_id
    for key, value in config.items():
        client.set_tag(parent_run_id, f"{Tags.BEST_PARAM_PREFIX}{key}", str(value))
    client.set_tag(parent_run_id, Tags.FIXED, "true")
    phase("promotion")
    result = StudySummary(
        name=spec.name,
        study_dir=state.folder.path,
        parent_run_id=parent_run_id,
        tracking_uri=tracking.uri,
        best_config=config,
        best_value=None,
        best_trial_id=None,
        trials=[],
        promotion=_promote(spec, ctx, config, state, tracking),
    )
    _write_summary(client, result, state)
    return result


def _promote(
    spec: StudySpec,
    ctx: TrialContext,
    config: dict[str, Any],
    state: _StateFile,
    tracking: _Tracking,
) -> dict[str, dict[str, Any]]:
    """Retrain ``config`` (and the baselines) over the seeds, keep the result in study.json
    and record it in MLflow (service.runner.promotion)."""
    state.data.promotion = promote(spec, ctx, config, state.folder)
    state.save()
    log_promotion(tracking, spec, state.folder, state.data.promotion, config, ctx.data_root)
    return state.data.promotion


def _log_plots(
    tracking: _Tracking,
    storage: str,
    study_name: str,
    best_trial_id: str | None,
    spec: StudySpec,
    folder: StudyFolder,
) -> None:
    """Optuna's plots of every objective and the best trial's per-class accuracy
    (service.runner.study_plots), logged to the parent run."""
    study = optuna.load_study(study_name=study_name, storage=storage)
    objectives = [spec.objective, *([spec.second_objective] if spec.second_objective else [])]
    modes = [(o.metric, o.mode) for o in objectives]
    log_study_plots(tracking.client, tracking.parent_run_id, study, modes, folder, best_trial_id)
