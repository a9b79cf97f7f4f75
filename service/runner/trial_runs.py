"""What a trial's MLflow run shows beyond its per-epoch metrics, so that trials can be compared
in the MLflow UI: a readable name, the study's fixed context as params, the trial's value at
its best epoch (what pcd ranks it by: service.ranking), how it ended, and its files.

- name: ``t03 stages=3 temperature=4.12 alpha=0.5`` (the trial's ordinal in the study, then its
  sampled parameters; keys shortened to unique prefixes past ``MAX_NAME`` characters); a trial
  that stopped before its last epoch gets `` (stopped@3)`` appended when it ends.
- params: its configuration plus ``CONTEXT_PARAMS`` (method, teacher, student, ...).
- metrics ``best_<objective>`` (for every objective) and ``best_epoch``: a finished trial's
  value; a failed trial gets none, as its epochs do not count, so that sorting the runs by
  ``best_<objective>`` puts the study's winner first. The winner is tagged ``Tags.BEST``.
- description (``Tags.NOTE``): how it ended, e.g. "Stopped early by ASHA at epoch 3 of 10".
- artifacts: ``metrics.jsonl``, ``plots/curves.png`` and ``checkpoints/best.pt`` (when not
  larger than ``PCD_TRIAL_CHECKPOINT_MAX_MB``), read from the trial's folder when the driver
  can read it (shared storage on a cluster).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlflow.entities import Param

from pcd_core.methods import needs_teacher
from pcd_core.run_dir import RunDir
from service.ranking import Mode, at_best_epoch_key, best_index
from service.study_files import (
    TRIAL_CONTEXT_PARAMS,
    StudyFolder,
    Tags,
    TrialOutcome,
    TrialRow,
    child_runs_filter,
)

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from search_spaces.schema import StudySpec

log = logging.getLogger(__name__)

MAX_NAME = 60  # characters of a trial run's name before its (stopped@N) suffix
BEST_EPOCH = "best_epoch"
PLOTS, CHECKPOINTS = "plots", "checkpoints"  # artifact folders of a trial's run
CURVES = "curves.png"


@dataclass(frozen=True)
class TrialRunInfo:
    """What the MLflow callback needs of the study to describe its trials' runs (picklable:
    it is pickled with the Tune experiment)."""

    context: dict[str, str]  # params every trial run gets (CONTEXT_PARAMS)
    objectives: tuple[tuple[str, Mode], ...]  # (metric, mode), the primary first
    searched: tuple[str, ...]  # the sampled parameters, in the space's order
    trials: int
    epochs: int  # a trial's epochs, unless it samples "epochs"
    scheduler: str
    study_dir: str
    checkpoint_max_mb: float

    @classmethod
    def from_spec(cls, spec: StudySpec, study_dir: str | Path, checkpoint_max_mb: float):
        teacher = (
            (spec.teacher.arch or spec.teacher.checkpoint) if needs_teacher(spec.method) else None
        )
        values = (spec.method, teacher or "none", spec.student, spec.data.name)
        values += (spec.budget.max_epochs, spec.name, Path(study_dir).name)
        context = {k: str(v) for k, v in zip(TRIAL_CONTEXT_PARAMS, values, strict=True)}
        objectives = [spec.objective, *([spec.second_objective] if spec.second_objective else [])]
        return cls(
            context=context,
            objectives=tuple((o.metric, o.mode) for o in objectives),
            searched=tuple(k for k, p in spec.space.items() if p.type != "fixed"),
            trials=spec.budget.trials,
            epochs=spec.training.epochs or spec.budget.max_epochs,
            scheduler=spec.scheduler.type,
            study_dir=str(study_dir),
            checkpoint_max_mb=checkpoint_max_mb,
        )

    def trial_epochs(self, config: dict[str, Any]) -> int:
        return int(config.get("epochs") or self.epochs)

    def trial_dir(self, trial_id: str) -> Path:
        return StudyFolder(Path(self.study_dir)).trial_dir(trial_id)


# ---------------------------------------------------------------------------- names
def trial_ordinal(experiment_tag: str) -> int | None:
    """The trial's number in its study (Tune's experiment tag starts with it: ``3_...``)."""
    head = (experiment_tag or "").split("_", 1)[0]
    return int(head) if head.isdigit() else None


def format_value(value: Any, digits: int = 3) -> str:
    """A value as a name or note shows it: floats to ``digits`` significant digits."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e9:
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def short_keys(names: tuple[str, ...]) -> dict[str, str]:
    """Each name's shortest prefix that no other name starts with (the whole name if none)."""
    out = {}
    for name in names:
        others = [n for n in names if n != name]
        unique = (name[:n] for n in range(1, len(name)) if not _prefixes(name[:n], others))
        out[name] = next(unique, name)
    return out


def _prefixes(prefix: str, names: list[str]) -> bool:
    return any(n.startswith(prefix) for n in names)


def run_name(ordinal: int | None, trial_id: str, config: dict[str, Any], info: TrialRunInfo) -> str:
    """A trial run's name: its ordinal and sampled parameters, at most MAX_NAME characters."""
    width = len(str(max(info.trials, 1)))
    head = f"t{ordinal:0{width}d}" if ordinal is not None else f"t-{trial_id}"
    keys = [k for k in info.searched if k in config]
    for names in ({k: k for k in keys}, short_keys(tuple(info.searched))):
        name = " ".join([head] + [f"{names[k]}={format_value(config[k])}" for k in keys])
        if len(name) <= MAX_NAME:
            return name
    return name[: MAX_NAME - 1] + "…"


def final_name(name: str, outcome: str, epochs: int) -> str:
    """The run's name once the trial ended: a trial stopped early says so, and when."""
    return f"{name} (stopped@{epochs})" if outcome == TrialOutcome.stopped_early else name


def outcome_note(
    outcome: str, epochs: int, of: int, scheduler: str, best: dict[str, float], error: str | None
) -> str:
    """The run's description (MLflow's ``mlflow.note.content``), one or two sentences."""
    if outcome == TrialOutcome.failed:
        return f"Failed after {epochs} of {of} epochs: {error or 'unknown error'}"
    if outcome == TrialOutcome.stopped_early:
        by = "by ASHA" if scheduler == "asha" else "by the study's time limit"
        note = f"Stopped early {by} at epoch {epochs} of {of}."
    else:
        note = f"Completed {epochs} of {of} epochs."
    values = ", ".join(
        f"{k.removeprefix('best_')} {format_value(v, 4)}"
        for k, v in best.items()
        if k != BEST_EPOCH
    )
    if values and BEST_EPOCH in best:
        note += f" Best epoch {int(best[BEST_EPOCH])}: {values}."
    return note


# ---------------------------------------------------------------------------- values
def best_metrics(
    client: MlflowClient, run_id: str, objectives: tuple[tuple[str, Mode], ...]
) -> dict[str, float]:
    """``best_<objective>`` for every objective and ``best_epoch``: the objectives at the
    trial's best epoch by the primary one (service.ranking), from the run's logged history."""
    metric, mode = objectives[0]
    history = sorted(client.get_metric_history(run_id, metric), key=lambda m: m.step)
    i = best_index([m.value for m in history], mode)
    if i is None:
        return {}
    step = history[i].step
    out = {f"best_{metric}": history[i].value, BEST_EPOCH: float(step)}
    for other, _ in objectives[1:]:
        logged = client.get_metric_history(run_id, at_best_epoch_key(other))
        value = next((m.value for m in logged if m.step == step), None)
        if value is not None:
            out[f"best_{other}"] = value
    return out


def missing_params(existing: dict[str, str], wanted: dict[str, Any]) -> list[Param]:
    """The params of ``wanted`` a run lacks (MLflow params are immutable: one that exists
    with another value is left as it is, with a warning)."""
    out = []
    for key, value in wanted.items():
        text = str(value)
        if key not in existing:
            out.append(Param(key, text))
        elif existing[key] != text:
            log.warning("param %s is %r on the run, not %r: kept", key, existing[key], text)
    return out


# ---------------------------------------------------------------------------- files
def log_trial_files(client: MlflowClient, run_id: str, trial_dir: Path, info: TrialRunInfo):
    """The trial's metrics, its curves and (small enough) best checkpoint, as artifacts of its
    run. Never raises: a folder the driver cannot read is skipped with a log line."""
    run = RunDir(trial_dir)
    if not run.metrics.is_file():
        log.info("trial folder %s not readable from the driver: no artifacts logged", trial_dir)
        return
    _try(client.log_artifact, run_id, str(run.metrics))
    _try(_log_curves, client, run_id, run, info)
    limit = info.checkpoint_max_mb * 1e6
    try:
        size = run.best.stat().st_size if run.best.is_file() else None
    except OSError:
        size = None
    if size is not None and size <= limit:
        _try(client.log_artifact, run_id, str(run.best), CHECKPOINTS)
    elif size is not None:
        log.info("best.pt of %s is %.0f MB, over the limit: not logged", trial_dir, size / 1e6)


def _log_curves(client: MlflowClient, run_id: str, run: RunDir, info: TrialRunInfo) -> None:
    from service.runner.study_plots import trial_curves

    with tempfile.TemporaryDirectory(prefix="pcd-curves-") as tmp:
        png = Path(tmp) / CURVES
        if trial_curves(run.read_metrics(), png, *info.objectives[0]):
            client.log_artifact(run_id, str(png), PLOTS)


def _try(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except Exception:
        name = getattr(fn, "__name__", fn)
        log.warning("could not log a trial artifact (%s)", name, exc_info=True)


# ---------------------------------------------------------------------------- the winner
def mark_best(client: MlflowClient, experiment_id: str, parent_run_id: str, best: TrialRow) -> None:
    """Tag the winning trial's run (only it) and give the parent run the best configuration
    as ``best.<param>`` params (once, at the end: params are immutable)."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"{child_runs_filter(parent_run_id)} and tags.`{Tags.BEST}` = 'true'",
        max_results=10000,
    )
    for run in runs:  # a restored driver's earlier mark of another trial
        if run.data.tags.get(Tags.TRIAL_ID) != best.trial_id:
            client.delete_tag(run.info.run_id, Tags.BEST)
    winner = client.search_runs(
        [experiment_id],
        filter_string=(
            f"{child_runs_filter(parent_run_id)} and tags.`{Tags.TRIAL_ID}` = '{best.trial_id}'"
        ),
        max_results=1,
    )
    if winner:
        client.set_tag(winner[0].info.run_id, Tags.BEST, "true")
    existing = client.get_run(parent_run_id).data.params
    wanted = {f"{Tags.BEST_PARAM_PREFIX}{k}": v for k, v in best.config.items()}
    params = missing_params(existing, wanted)
    if params:
        client.log_batch(parent_run_id, params=params)
