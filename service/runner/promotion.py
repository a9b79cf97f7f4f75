"""Promotion: the study's best configuration (and each baseline, at its defaults) retrained on
train+val with several seeds and tested; and the study's record in MLflow beyond its trials.

MLflow layout under the study's parent run (children carry ``mlflow.parentRunId``; trial runs
are the children with a ``pcd.trial_id``, the runs here have a ``pcd.kind`` instead):

- one run per seed, ``promoted seed N`` (pcd.kind=promotion, pcd.label=best) and
  ``baseline kd (at defaults) seed N`` (pcd.kind=baseline, pcd.label=baseline_kd), with
  pcd.seed; params method, config (the searched parameters, JSON), seed, epochs,
  trained_on=train+val; metrics ``test_top1`` (the last epoch's weights on test, at step = the
  last epoch), the per-epoch curves of its run folder (train_top1, lr, loss_*, epoch_seconds;
  step = epoch) and, with ``promotion.test_each_epoch``, ``test_top1_by_epoch`` and
  ``best_test_epoch_top1`` (selected on test: optimistic, the literature's number);
- ``teacher`` (pcd.kind=teacher) when the study trained its teacher: its curves, test_top1
  (last epoch) and test_top1_best_val (its best-on-val weights, the ones the study distils
  from);
- on the parent: ``promoted_test_top1_mean`` / ``_std`` / ``promoted_seeds``,
  ``baseline_<method>_test_top1_mean`` / ``_std`` / ``_seeds`` and
  ``baseline_<method>_paired_diff`` / ``_paired_diff_ci95`` (promoted - baseline, paired by
  seed: both train seed i with the same data order and initialisation), with test_each_epoch
  ``promoted_best_test_epoch_top1_mean`` / ``_std``, and ``teacher_test_top1`` /
  ``teacher_val_top1``; its description (``mlflow.note.content``, study_note) says what they
  mean, and, once promoted, one line per baseline: ``promoted − kd (at defaults): +1.02 ±
  0.80 points (95% CI, 3 seeds) → promoted better`` (service.promotion_view). Baselines run
  at their method's defaults, not tuned (comparison studies, ``pcd compare``, tune every
  method with the same budget);
- the dataset's train and test splits as inputs of the parent and of each seed run
  (dataset_inputs: name, digest, source, schema, profile);
- the promoted student of seed 0 (its last-epoch weights, the ones its test_top1 scores) as
  the MLflow model ``model`` of run ``promoted seed 0``, with a signature and an input example
  (two normalised test images), registered as ``promotion.registered_model_name`` when the
  spec names one. A registration that fails fails the study (the user asked for it); a plain
  logging that fails leaves the tag pcd.model_error on the run and a warning.

Restore-safe: a driver restarted after a crash trains again (train_remote resumes from the
run folders, a finished one at once) and logs again: a run is found by its tags; a FINISHED one
is kept as it is, an unfinished one (the crash hit while it was logged) is deleted and logged
afresh. The parent's summary metrics are logged once; its inputs again, which MLflow keeps as
one.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import ray
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from pcd_core.compare import mean_std
from pcd_core.data import ImageData, load_dataset
from pcd_core.methods import METHODS, needs_teacher
from pcd_core.run_dir import RunDir
from pcd_core.stats import paired_difference
from pcd_core.train import EpochMetrics, load_teacher
from pcd_core.train.trainer import dataset_fingerprint
from search_spaces.schema import StudySpec
from service.promotion_view import FAIR_HINT, PROMOTED, paired_line
from service.runner.errors import StudyError, one_line
from service.runner.remote import remote_opts, train_remote
from service.runner.tracking import system_tags
from service.runner.trainable import TrialContext, trial_config
from service.study_files import RunKind, StudyFolder, Tags, study_runs_filter

log = logging.getLogger(__name__)

TEACHER = "teacher"
TRAINED_ON = "train+val"


def model_name(spec: StudySpec) -> str:
    """The promoted student's name in MLflow's model list: the study's, not a bare "model"."""
    return f"{spec.name}-student"


DIGEST_CHARS = 32  # MLflow keeps at most 36 characters of a dataset digest
MAX_BATCH = 1000  # metrics per MLflow log_batch call
MAX_TAG = 5000


class Tracked(Protocol):
    """Where the study's runs are tracked (study._Tracking)."""

    client: MlflowClient
    uri: str
    experiment_id: str
    parent_run_id: str


# ------------------------------------------------------------------------------- training
def _runs(spec: StudySpec, best: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, method, parameters) of what is promoted: the best config, then the baselines."""
    baselines = [(f"baseline_{m}", m, {}) for m in spec.promotion.baselines]
    return [(PROMOTED, spec.method, best), *baselines]


def promote(
    spec: StudySpec, ctx: TrialContext, best: dict[str, Any], folder: StudyFolder
) -> dict[str, dict[str, Any]]:
    """Retrain ``best`` (and the baselines at their defaults) on the whole training split with
    several seeds; test accuracy of the last epoch, mean +- std (and of the best epoch on
    test, labelled as such, with ``promotion.test_each_epoch``)."""
    seeds = range(spec.promotion.seeds)
    if not seeds:
        return {}
    jobs: dict[str, list[Any]] = {}
    for label, method, params in _runs(spec, best):
        configs = [
            trial_config(ctx, params, method=method, seed=seed, val_fraction=0.0) for seed in seeds
        ]
        if spec.promotion.test_each_epoch:
            configs = [c.model_copy(update={"test_each_epoch": True}) for c in configs]
        jobs[label] = [
            train_remote.options(**remote_opts(spec)).remote(
                config.model_dump(mode="json"), str(folder.promotion_dir(label, seed))
            )
            for seed, config in zip(seeds, configs, strict=True)
        ]
    results = {label: _stats(ray.get(refs)) for label, refs in jobs.items()}
    return _with_paired(results, spec.promotion.baselines)


def _with_paired(
    results: dict[str, dict[str, Any]], baselines: list[str]
) -> dict[str, dict[str, Any]]:
    """Each baseline marked as at its defaults (the options it ran with) and compared with
    the promoted result seed by seed: seed i of both trained with trial_config(seed=i), the
    same data order and initialisation (common random numbers)."""
    promoted = results[PROMOTED]["test_top1"]
    for method in baselines:
        stats = results[f"baseline_{method}"]
        diff = paired_difference(promoted, stats["test_top1"])
        stats["at_defaults"] = True
        stats["options"] = METHODS[method].options().model_dump(mode="json")
        stats["paired_vs_promoted"] = {
            "mean": diff.mean,
            "std": diff.std,
            "ci95": diff.ci95 if math.isfinite(diff.ci95) else None,  # None: no interval
            "wins": diff.wins,  # seeds on which the promoted result is ahead
            "n": diff.n,
            "verdict": diff.verdict("promoted", method),
        }
    return results


def _stats(results: list[dict[str, Any]]) -> dict[str, Any]:
    tops = [float(r["test"]["last"]["top1"]) for r in results]
    out: dict[str, Any] = {**mean_std(tops)._asdict(), "seeds": len(tops), "test_top1": tops}
    best = [r["test"]["best_test_epoch"] for r in results if "best_test_epoch" in r["test"]]
    if best:
        top1 = [float(b["top1"]) for b in best]
        out["best_epoch"] = {
            **mean_std(top1)._asdict(),
            "test_top1": top1,
            "epochs": [int(b["epoch"]) for b in best],
            "selected_on": "test",
        }
    return out


# ----------------------------------------------------------------------------- the parent
def study_note(
    spec: StudySpec, study_id: str, promotion: dict[str, dict[str, Any]] | None = None
) -> str:
    """The parent run's description (mlflow.note.content, Markdown): the study's own, where
    to follow it, what its promoted result and baselines mean and, once promoted, each
    baseline's paired difference."""
    parts = [spec.description.strip()] if spec.description.strip() else []
    parts.append(
        f"Study `{study_id}` (its folder's name; the study's id when the pcd API ran it: "
        f"`pcd study show {study_id}`, `GET /v1/studies/{study_id}`)."
    )
    if spec.comparison is not None:  # no promotion: its entries' seed runs are the result
        parts.append(_comparison_note(spec))
    n = spec.promotion.seeds if spec.comparison is None else 0
    if n:
        parts.append(
            f"**Promoted result**: the best configuration retrained on train+val (the whole "
            f"training split) with {n} seed{'s' if n != 1 else ''}; test top-1 of the last "
            "epoch, mean ± std over the seeds: `promoted_test_top1_mean` ± "
            "`promoted_test_top1_std` (`promoted_seeds`); one child run per seed "
            "(`promoted seed N`, with its curves; seed 0 holds the model)."
        )
    if n and spec.promotion.baselines:
        parts.append(_baselines_note(spec.promotion.baselines, promotion or {}))
    if n and spec.promotion.test_each_epoch:
        parts.append(
            "`*_best_test_epoch_top1_*`: the best epoch's test top-1, **selected on test** "
            "(optimistic; the literature's number), beside the last epoch's."
        )
    methods = [e.method for e in spec.comparison.entries] if spec.comparison else [spec.method]
    if any(needs_teacher(m) for m in methods):
        parts.append("`teacher_test_top1`: the teacher's test top-1 (its best-on-val weights).")
    return "\n\n".join(parts)


def _comparison_note(spec: StudySpec) -> str:
    comparison = spec.comparison
    assert comparison is not None
    names = ", ".join(e.name for e in comparison.entries)
    return (
        f"**Comparison** of {names}: each tuned entry searched with the same budget and "
        f"sampler on val, then trained over {comparison.seeds} seeds (common random numbers); "
        f"test top-1 at the best-on-val epoch and the last, paired differences to "
        f"`{comparison.reference_name}` with their 95% intervals (one child run per entry "
        "and seed; `plots/comparison.png`)."
    )


def _baselines_note(baselines: list[str], promotion: dict[str, dict[str, Any]]) -> str:
    names = ", ".join(baselines)
    note = (
        f"**Baselines** ({names}) at their defaults, not tuned: "
        "`baseline_<method>_test_top1_mean` / `_std`, child runs "
        "`baseline <method> (at defaults) seed N`, trained like the promoted result with the "
        "same seeds; `baseline_<method>_paired_diff` ± `_paired_diff_ci95`: promoted − "
        f"baseline, paired by seed (95% CI). Note: {FAIR_HINT}."
    )
    lines = [
        line
        for label, stats in promotion.items()
        if (line := paired_line(label, stats)) is not None
    ]
    return "\n\n".join([note, *(f"- {line}" for line in lines)])


def parent_tags(spec: StudySpec, study_id: str) -> dict[str, str]:
    """MLflow's system tags and the description of a new parent run."""
    return {**system_tags(), Tags.NOTE: study_note(spec, study_id)[:MAX_TAG]}


def log_promotion(
    tracking: Tracked,
    spec: StudySpec,
    folder: StudyFolder,
    promotion: dict[str, dict[str, Any]],
    best: dict[str, Any],
    data_root: str | None,
) -> None:
    """One child run per promoted and baseline seed, the model of the promoted seed 0, and
    the parent's summary metrics and inputs (see the module's docstring); ``best`` is the
    promoted configuration."""
    if not promotion:
        return
    data = study_data(spec, data_root)
    for label, method, params in _runs(spec, best):
        for seed in range(int(promotion[label]["seeds"])):
            _log_seed_run(tracking, spec, folder, (label, method, params, seed), data)
    _log_summary(tracking.client, tracking.parent_run_id, promotion)
    note = study_note(spec, folder.path.name, promotion)[:MAX_TAG]  # with paired differences
    tracking.client.set_tag(tracking.parent_run_id, Tags.NOTE, note)


def _prefix(label: str) -> str:
    return "promoted" if label == PROMOTED else label


def _log_summary(client: MlflowClient, run_id: str, promotion: dict[str, dict[str, Any]]) -> None:
    values: dict[str, float | None] = {}
    for label, stats in promotion.items():
        p = _prefix(label)
        values |= {
            f"{p}_test_top1_mean": stats["mean"],
            f"{p}_test_top1_std": stats["std"],
            f"{p}_seeds": stats["seeds"],
        }
        if "best_epoch" in stats:
            values[f"{p}_best_test_epoch_top1_mean"] = stats["best_epoch"]["mean"]
            values[f"{p}_best_test_epoch_top1_std"] = stats["best_epoch"]["std"]
        if "paired_vs_promoted" in stats:  # promoted - this baseline (None: one seed)
            values[f"{p}_paired_diff"] = stats["paired_vs_promoted"]["mean"]
            values[f"{p}_paired_diff_ci95"] = stats["paired_vs_promoted"]["ci95"]
    logged = client.get_run(run_id).data.metrics  # a restarted driver logs only what is new
    _log_metrics(client, run_id, [(k, v, 0) for k, v in values.items() if k not in logged])


def _log_metrics(client: MlflowClient, run_id: str, values: list[tuple[str, Any, int]]) -> None:
    """(key, value, step) triples, the finite ones, in batches MLflow accepts."""
    ts = int(time.time() * 1000)
    metrics = [
        Metric(k, float(v), ts, int(step))
        for k, v, step in values
        if v is not None and math.isfinite(float(v))
    ]
    for i in range(0, len(metrics), MAX_BATCH):
        client.log_batch(run_id, metrics=metrics[i : i + MAX_BATCH])


# ------------------------------------------------------------------------------ seed runs
def training_window(run_dir: RunDir) -> tuple[int | None, int | None]:
    """When a finished run folder trained, as MLflow times (ms): it ends when its summary was
    written and starts its epochs' seconds before. Its MLflow run is logged afterwards, and
    would otherwise last the few milliseconds of its logging."""
    try:
        ended = run_dir.summary.stat().st_mtime
    except OSError:
        return None, None
    seconds = sum(float(e.get("seconds") or 0.0) for e in run_dir.read_metrics())
    return int((ended - seconds) * 1000), int(ended * 1000)


def _open_run(
    tracking: Tracked,
    kind: RunKind,
    name: str,
    label: str,
    seed: int,
    started_ms: int | None = None,
) -> str | None:
    """A new child run, or None when a FINISHED one with these tags exists (logged before a
    driver crash); an unfinished one is deleted (soft) to be logged afresh."""
    client = tracking.client
    query = (
        f"{study_runs_filter(tracking.parent_run_id, kind)} and tags.`{Tags.LABEL}` = "
        f"'{label}' and tags.`{Tags.SEED}` = '{seed}'"
    )
    found = client.search_runs([tracking.experiment_id], query, max_results=10)
    if any(run.info.status == "FINISHED" for run in found):
        return None
    for run in found:
        client.delete_run(run.info.run_id)
    tags = {
        Tags.PARENT_RUN: tracking.parent_run_id,
        Tags.RUN_NAME: name,
        Tags.KIND: str(kind),
        Tags.LABEL: label,
        Tags.SEED: str(seed),
        **system_tags(),
    }
    return client.create_run(tracking.experiment_id, start_time=started_ms, tags=tags).info.run_id


@contextmanager
def _closed(client: MlflowClient, run_id: str, ended_ms: int | None = None) -> Iterator[None]:
    """The run FINISHED when the block ends; FAILED when it raises (best effort: MLflow may
    be why), so that no run of a failed study stays RUNNING."""
    try:
        yield
    except BaseException:
        try:
            client.set_terminated(run_id, status="FAILED")
        except Exception:
            log.warning("could not mark run %s FAILED", run_id, exc_info=True)
        raise
    client.set_terminated(run_id, status="FINISHED", end_time=ended_ms)


def run_name(label: str, seed: int) -> str:
    """A seed run's name: ``promoted seed 0``, ``baseline kd (at defaults) seed 1``."""
    if label == PROMOTED:
        return f"promoted seed {seed}"
    return f"baseline {label.removeprefix('baseline_')} (at defaults) seed {seed}"


def _seed_note(label: str, test_each_epoch: bool) -> str:
    what = "the study's best configuration" if label == PROMOTED else "this baseline at defaults"
    note = (
        f"One seed of {what}, retrained on train+val (no validation split). `test_top1`: the "
        "last epoch's weights on test."
    )
    if test_each_epoch:
        note += " `best_test_epoch_top1`: the best epoch's test top-1, selected on test."
    return note


def _log_seed_run(
    tracking: Tracked,
    spec: StudySpec,
    folder: StudyFolder,
    what: tuple[str, str, dict[str, Any], int],
    data: StudyData,
) -> None:
    label, method, params, seed = what
    kind = RunKind.promotion if label == PROMOTED else RunKind.baseline
    started, ended = training_window(RunDir(folder.promotion_dir(label, seed)))
    run_id = _open_run(tracking, kind, run_name(label, seed), label, seed, started)
    if run_id is None:
        return
    with _closed(tracking.client, run_id, ended):
        _fill_seed_run(tracking, spec, folder, (label, method, params, seed), run_id, data)


def _fill_seed_run(
    tracking: Tracked,
    spec: StudySpec,
    folder: StudyFolder,
    what: tuple[str, str, dict[str, Any], int],
    run_id: str,
    data: StudyData,
) -> None:
    label, method, params, seed = what
    client, run_dir = tracking.client, RunDir(folder.promotion_dir(label, seed))
    summary = run_dir.read_summary() or {}
    config = summary.get("config", {})
    params_out = {
        "method": method,
        "config": json.dumps(params, default=str) if label == PROMOTED else "defaults",
        "seed": seed,
        "epochs": config.get("epochs"),
        "trained_on": TRAINED_ON,
    }
    client.log_batch(
        run_id,
        params=[Param(k, str(v)) for k, v in params_out.items()],
        tags=[RunTag(Tags.NOTE, _seed_note(label, spec.promotion.test_each_epoch))],
    )
    client.log_dict(run_id, config, "train_config.json")
    client.log_inputs(run_id, datasets=data.inputs)
    _log_run_metrics(client, run_id, run_dir, summary)
    if label == PROMOTED and seed == 0:
        registered = spec.promotion.registered_model_name
        _log_model(tracking, run_id, run_dir, data, (model_name(spec), registered))


def _log_run_metrics(
    client: MlflowClient, run_id: str, run_dir: RunDir, summary: dict[str, Any]
) -> None:
    """The per-epoch curves of the run folder, test_top1 (last epoch) and, when the run
    tested every epoch, test_top1_by_epoch and best_test_epoch_top1 (selected on test)."""
    values: list[tuple[str, Any, int]] = []
    for row in run_dir.read_metrics():
        epoch = EpochMetrics(**row)
        values += [(k, v, epoch.epoch) for k, v in epoch.scalars().items()]
        if epoch.test_top1 is not None:
            values.append(("test_top1_by_epoch", epoch.test_top1, epoch.epoch))
    test = summary.get("test", {})
    if "last" in test:
        values.append(("test_top1", test["last"]["top1"], int(test["last"]["epoch"])))
    if "best_val" in test:  # a run with a val split (the teacher): its best-on-val weights
        best_val = test["best_val"]
        values.append(("test_top1_best_val", best_val["top1"], int(best_val["epoch"])))
    if "best_test_epoch" in test:
        best = test["best_test_epoch"]
        values.append(("best_test_epoch_top1", best["top1"], int(best["epoch"])))
    _log_metrics(client, run_id, values)


# ---------------------------------------------------------------------------------- model
@contextmanager
def _fluent_uri(uri: str) -> Iterator[None]:
    """MLflow's fluent model API at ``uri`` (tracking and registry), for one call."""
    import mlflow

    old_tracking, old_registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(old_tracking)
        mlflow.set_registry_uri(old_registry)


def _requirements() -> list[str]:
    """The model's pip requirements, named rather than inferred (inferring loads the model in
    a subprocess: seconds per model). pcd_core itself travels with the model (code_paths)."""
    import mlflow
    import torch

    version = torch.__version__.split("+")[0]
    return [f"torch=={version}", f"numpy=={np.__version__}", f"mlflow=={mlflow.__version__}"]


def _student(run_dir: RunDir, data: StudyData) -> tuple[Any, np.ndarray]:
    """The run's last-epoch student (eval mode) and its logits on the input example."""
    import torch

    from pcd_core.models import build_model
    from pcd_core.train.checkpoint import load_file

    config = (run_dir.read_summary() or {}).get("config", {})
    model = build_model(config["arch"], data.num_classes, data.channels, data.image_side)
    model.load_state_dict(load_file(run_dir.last, "promoted run checkpoint")["model"])
    model.eval()
    with torch.no_grad():
        return model, model(torch.from_numpy(data.example)).numpy()


def _log_model(
    tracking: Tracked,
    run_id: str,
    run_dir: RunDir,
    data: StudyData,
    names: tuple[str, str | None],
) -> None:
    """The seed run's last-epoch student as the MLflow model ``names[0]`` (signature and input
    example from two normalised test images; pcd_core's code inside, so that it loads where
    torch is installed), registered as ``registered`` when set, the version described. A
    failed registration fails the study; a failed plain logging is tagged and warned."""
    name, registered = names
    import mlflow
    import mlflow.pytorch
    from mlflow.models import infer_signature

    import pcd_core

    model, logits = _student(run_dir, data)
    try:
        # the active run gives the model its experiment (else MLflow's default, "0")
        with _fluent_uri(tracking.uri), mlflow.start_run(run_id=run_id):
            info = mlflow.pytorch.log_model(
                model,
                name=name,
                run_id=run_id,
                signature=infer_signature(data.example, logits),
                input_example=data.example,
                registered_model_name=registered,
                pip_requirements=_requirements(),
                code_paths=[str(Path(pcd_core.__file__).parent)],
                metadata={"input": data.input_note},
            )
        if registered and info.registered_model_version is not None:
            description = (
                f"pcd study run {tracking.parent_run_id}: the promoted configuration, seed 0, "
                f"last-epoch weights (run {run_id}). Input: {data.input_note}."
            )
            version = str(info.registered_model_version)
            tracking.client.update_model_version(registered, version, description=description)
    except Exception as err:
        if registered:
            raise StudyError(
                f"could not log and register the promoted model as {registered!r}: {one_line(err)}"
            ) from err
        log.warning("could not log the promoted model: %s", one_line(err))
        tracking.client.set_tag(run_id, Tags.MODEL_ERROR, one_line(err)[:MAX_TAG])


# -------------------------------------------------------------------------------- dataset
@dataclass(frozen=True)
class StudyData:
    """The study's dataset as MLflow inputs, and a real input batch for a model signature."""

    inputs: list[DatasetInput]
    example: np.ndarray  # two test images, normalised as in training: float32 [2, C, H, W]
    input_note: str
    num_classes: int
    channels: int
    image_side: int


def study_data(spec: StudySpec, data_root: str | None) -> StudyData:
    """Loads the study's train and test splits (as its runs do)."""
    # at the size the runs train at (the spec's image_size when it resizes an image folder)
    size = {"image_size": spec.data.image_size} if spec.data.image_size is not None else {}
    train = load_dataset(spec.data.name, "train", data_root, **size)
    test = load_dataset(spec.data.name, "test", data_root, **size)
    images = test.images[:2].float() / 255.0
    mean = np.asarray(train.mean, dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(train.std, dtype=np.float32).reshape(1, -1, 1, 1)
    example = ((images.numpy() - mean) / std).astype(np.float32)
    return StudyData(
        inputs=dataset_inputs(spec, data_root, train, test),
        example=example,
        input_note=(
            f"float32 [N, {train.channels}, {train.image_size[0]}, {train.image_size[1]}]: "
            f"pixels / 255, minus mean {list(train.mean)}, over std {list(train.std)} "
            "(the training split's, per channel); outputs are logits"
        ),
        num_classes=train.num_classes,
        channels=train.channels,
        image_side=train.image_size[0],
    )


def dataset_inputs(
    spec: StudySpec, data_root: str | None, train: ImageData, test: ImageData
) -> list[DatasetInput]:
    """The train split (context ``training``: the search splits val off it, the promotion
    trains on all of it) and the test split (``testing``) as MLflow dataset inputs.

    digest: the first 32 hex digits of pcd_core's dataset fingerprint, a sha256 over every
    image and label of the split (the training split's is the one a teacher artifact records
    as dataset_fingerprint; the profile holds it in full). source: the data folder (local) or
    the built-in dataset's loader (code). schema: uint8 images [N, C, H, W] and int64 labels.
    profile: classes, image size, channels, split sizes, the val split's fraction and seed."""
    if data_root:
        source_type, source = "local", json.dumps({"uri": Path(data_root).resolve().as_uri()})
    else:
        loader = {"loader": "pcd_core.data.load_dataset", "name": spec.data.name}
        source_type, source = "code", json.dumps({"tags": loader})
    out = []
    for data, context in ((train, "training"), (test, "testing")):
        fingerprint = dataset_fingerprint(data)
        dataset = Dataset(
            name=f"{spec.data.name}-{data.split}",
            digest=fingerprint[:DIGEST_CHARS],
            source_type=source_type,
            source=source,
            schema=json.dumps(_schema(data)),
            profile=json.dumps(_profile(spec, data, train, test, fingerprint)),
        )
        out.append(DatasetInput(dataset, [InputTag(MLFLOW_DATASET_CONTEXT, context)]))
    return out


def _schema(data: ImageData) -> dict[str, Any]:
    from mlflow.data.schema import TensorDatasetSchema
    from mlflow.types import Schema, TensorSpec

    shape = (-1, data.channels, *data.image_size)
    return TensorDatasetSchema(
        features=Schema([TensorSpec(np.dtype(np.uint8), shape, "images")]),
        targets=Schema([TensorSpec(np.dtype(np.int64), (-1,), "labels")]),
    ).to_dict()


def _profile(
    spec: StudySpec, data: ImageData, train: ImageData, test: ImageData, fingerprint: str
) -> dict[str, Any]:
    return {
        "split": data.split,
        "num_rows": len(data),
        "classes": data.num_classes,
        "image_size": list(data.image_size),
        "channels": data.channels,
        "split_sizes": {"train": len(train), "test": len(test)},
        "val_fraction": spec.data.val_fraction,
        "val_split_seed": spec.data.seed,
        "fingerprint": fingerprint,
        "fingerprint_covers": "sha256 of every image and label of the split",
    }


# -------------------------------------------------------------------------------- teacher
def log_study_inputs(
    tracking: Tracked,
    spec: StudySpec,
    folder: StudyFolder,
    data_root: str | None,
    teacher: str | None,
) -> None:
    """Before the search: the dataset as the parent run's input, and the teacher's accuracy
    (log_teacher). Both are logged again, harmlessly, by a restarted driver."""
    data = study_data(spec, data_root)
    tracking.client.log_inputs(tracking.parent_run_id, datasets=data.inputs)
    log_teacher(tracking, spec, folder, teacher)


def log_teacher(
    tracking: Tracked, spec: StudySpec, folder: StudyFolder, teacher: str | None
) -> None:
    """The teacher's accuracy on the parent (teacher_test_top1, teacher_val_top1, as its
    artifact records them: its best-on-val weights), once; and, when the study trained it,
    a ``teacher`` child run with its curves."""
    if teacher is None:
        return
    client, parent = tracking.client, tracking.parent_run_id
    if "teacher_test_top1" not in client.get_run(parent).data.metrics:
        _, info = load_teacher(Path(teacher))
        values = [("teacher_test_top1", info.test_top1, 0)]
        if info.val_top1 >= 0:  # a teacher trained without a val split records -1
            values.append(("teacher_val_top1", info.val_top1, 0))
        _log_metrics(client, parent, values)
    run_dir = RunDir(folder.teacher_dir)
    if Path(teacher).resolve().parent != run_dir.path.resolve():
        return  # a stored checkpoint: its curves are not here
    started, ended = training_window(run_dir)
    run_id = _open_run(tracking, RunKind.teacher, TEACHER, TEACHER, spec.seed, started)
    if run_id is None:
        return
    with _closed(client, run_id, ended):
        _fill_teacher_run(client, run_id, run_dir, spec.seed)


def _fill_teacher_run(client: MlflowClient, run_id: str, run_dir: RunDir, seed: int) -> None:
    summary = run_dir.read_summary() or {}
    config = summary.get("config", {})
    params = {"arch": config.get("arch"), "epochs": config.get("epochs"), "seed": seed}
    note = (
        "The teacher the study trained (on train, selected on val). `test_top1`: its last "
        "epoch's weights; `test_top1_best_val`: its best-on-val weights, the teacher the "
        "study distils from (the parent's `teacher_test_top1`)."
    )
    client.log_batch(
        run_id,
        params=[Param(k, str(v)) for k, v in params.items()],
        tags=[RunTag(Tags.NOTE, note)],
    )
    client.log_dict(run_id, config, "train_config.json")
    _log_run_metrics(client, run_id, run_dir, summary)
