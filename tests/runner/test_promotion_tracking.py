"""The promotion as MLflow records it: one fixed-configuration PCD study on digits (its own
teacher, 2 seeds, a kd baseline, test every epoch, a registered model), `pcd study run` on a
local Ray, with its local MLflow store read back. Then the promotion is logged a second time
from the same folder (as a driver restarted after a crash does): no run is duplicated."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from pcd_core.methods import METHODS
from pcd_core.run_dir import RunDir
from pcd_core.train import CheckpointError
from search_spaces import parse_spec
from service.api.schemas import PromotionResult
from service.promotion_view import paired_line
from service.runner.promotion import log_promotion, log_study_inputs, model_name, study_data
from service.study_files import EXPERIMENT, RunKind, StudyFolder, Tags, child_runs_filter

from .conftest import cli_env, run_cli

REGISTERED = "pcd-digits-promoted-test"
SPACE = (
    "{stages: {type: fixed, value: 2}, temperature: {type: fixed, value: 4.0},"
    " alpha: {type: fixed, value: 1.0}, schedule: {type: fixed, value: joint},"
    " warmup: {type: fixed, value: 0}}"
)
SETS = {
    "teacher.epochs": "1",
    "space": SPACE,
    "budget.trials": "0",
    "budget.max_epochs": "2",
    "scheduler.type": "none",
    "promotion": "{seeds: 2, baselines: [kd], test_each_epoch: true,"
    f" registered_model_name: {REGISTERED}}}",
}


@dataclass
class _Tracking:
    client: MlflowClient
    uri: str
    experiment_id: str
    parent_run_id: str


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> StudyFolder:
    folder = StudyFolder(tmp_path_factory.mktemp("promotion") / "fixed")
    env = cli_env(folder.path)  # the local MLflow store in the folder
    sets = [arg for key, value in SETS.items() for arg in ("--set", f"{key}={value}")]
    args = ["study", "run", "pcd-digits", "--out", str(folder.path), *sets]
    proc = run_cli([*args, "--num-cpus", "2", "--quiet"], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return folder


def _client(folder: StudyFolder) -> tuple[MlflowClient, str]:
    client = MlflowClient(folder.mlflow_uri)
    return client, client.get_experiment_by_name(EXPERIMENT).experiment_id


def _children(folder: StudyFolder, kind: str) -> list:
    client, experiment = _client(folder)
    parent = folder.parent_run_id()
    query = f"tags.`{Tags.PARENT_RUN}` = '{parent}' and tags.`{Tags.KIND}` = '{kind}'"
    return client.search_runs([experiment], query, max_results=100)


def test_seed_runs_are_named_parented_children(study: StudyFolder) -> None:
    promoted, baselines = _children(study, RunKind.promotion), _children(study, RunKind.baseline)
    assert sorted(r.info.run_name for r in promoted) == ["promoted seed 0", "promoted seed 1"]
    assert sorted(r.info.run_name for r in baselines) == [
        "baseline kd (at defaults) seed 0",
        "baseline kd (at defaults) seed 1",
    ]
    for run in promoted + baselines:
        assert run.info.status == "FINISHED"
        assert run.data.params["trained_on"] == "train+val"
        assert run.data.params["epochs"] == "2" and run.data.tags[Tags.SEED] in ("0", "1")
        assert {"test_top1", "train_top1", "best_test_epoch_top1"} <= set(run.data.metrics)
        assert Tags.USER in run.data.tags and run.data.tags[Tags.SOURCE_TYPE] == "JOB"
    assert json.loads(promoted[0].data.params["config"])["stages"] == 2
    assert baselines[0].data.params["config"] == "defaults"
    client, _ = _client(study)
    curve = client.get_metric_history(promoted[0].info.run_id, "train_top1")
    assert sorted(m.step for m in curve) == [1, 2]
    # trial runs are the children with a trial id: none in a fixed study
    client, experiment = _client(study)
    assert client.search_runs([experiment], child_runs_filter(study.parent_run_id())) == []


def test_parent_summarises_the_seeds_and_says_what_they_mean(study: StudyFolder) -> None:
    client, _ = _client(study)
    parent = client.get_run(study.parent_run_id())
    metrics, tags = parent.data.metrics, parent.data.tags
    seeds = [r.data.metrics["test_top1"] for r in _children(study, RunKind.promotion)]
    assert metrics["promoted_seeds"] == 2
    assert metrics["promoted_test_top1_mean"] == pytest.approx(np.mean(seeds))
    assert metrics["promoted_test_top1_std"] == pytest.approx(np.std(seeds, ddof=1))
    assert "baseline_kd_test_top1_mean" in metrics
    assert "promoted_best_test_epoch_top1_mean" in metrics
    assert not any(k.endswith(".test_top1_mean") for k in metrics)  # the old names are gone
    assert 0 < metrics["teacher_test_top1"] <= 100
    assert "teacher_val_top1" in metrics
    note = tags[Tags.NOTE]
    assert "train+val" in note and "2 seeds" in note and "at their defaults" in note
    assert f"`GET /v1/studies/{study.path.name}`" in note  # where to follow the study
    assert tags[Tags.USER] and tags[Tags.SOURCE_NAME] == "pcd study"
    assert tags[Tags.SOURCE_TYPE] == "JOB" and len(tags.get(Tags.GIT_COMMIT, "x" * 40)) == 40
    (teacher,) = _children(study, RunKind.teacher)
    assert "val_top1" in teacher.data.metrics and "test_top1_best_val" in teacher.data.metrics


def test_baselines_are_at_defaults_and_paired_with_the_promoted_seeds(study: StudyFolder) -> None:
    summary = study.read_summary()
    assert summary is not None
    promoted, kd = summary.promotion["best"], summary.promotion["baseline_kd"]
    assert kd["at_defaults"] is True and "at_defaults" not in promoted
    assert kd["options"] == METHODS["kd"].options().model_dump(mode="json")
    paired = kd["paired_vs_promoted"]
    assert paired["n"] == 2 and 0 <= paired["wins"] <= 2
    diff = np.mean(promoted["test_top1"]) - np.mean(kd["test_top1"])
    assert paired["mean"] == pytest.approx(diff)
    assert paired["verdict"] in ("promoted better", "kd better", "no clear difference")
    # common random numbers: seed i of both trained with the same seed and data split
    for seed in range(2):
        ours = RunDir(study.promotion_dir("best", seed)).read_summary()["config"]
        theirs = RunDir(study.promotion_dir("baseline_kd", seed)).read_summary()["config"]
        assert ours["seed"] == theirs["seed"] == seed and ours["data"] == theirs["data"]
        assert theirs["method"] == "kd" and not theirs["method_options"]  # its defaults
    by_seed = {
        int(r.data.tags[Tags.SEED]): r.data.metrics["test_top1"]
        for r in _children(study, RunKind.baseline)
    }
    assert [by_seed[0], by_seed[1]] == pytest.approx(kd["test_top1"])  # in seed order
    typed = PromotionResult.model_validate(kd)  # what the API serves
    assert typed.at_defaults and typed.paired_vs_promoted.n == 2
    client, _ = _client(study)
    parent = client.get_run(study.parent_run_id())
    assert parent.data.metrics["baseline_kd_paired_diff"] == pytest.approx(paired["mean"])
    if paired["ci95"] is None:  # the same difference on both seeds: no interval, no metric
        assert "baseline_kd_paired_diff_ci95" not in parent.data.metrics
    else:
        ci95 = parent.data.metrics["baseline_kd_paired_diff_ci95"]
        assert ci95 == pytest.approx(paired["ci95"])
    note = parent.data.tags[Tags.NOTE]
    assert f"- {paired_line('baseline_kd', kd)}" in note
    head = f"promoted − kd (at defaults): {paired['mean']:+.2f} "
    assert head in note and f"→ {paired['verdict']}" in note
    assert "`pcd compare`" in note and "not tuned" in note


def test_dataset_is_an_input_with_a_digest(study: StudyFolder) -> None:
    client, _ = _client(study)
    inputs = client.get_run(study.parent_run_id()).inputs.dataset_inputs
    by_name = {i.dataset.name: i for i in inputs}
    assert set(by_name) == {"digits-train", "digits-test"}
    train = by_name["digits-train"].dataset
    profile = json.loads(train.profile)
    assert train.digest == profile["fingerprint"][:32] and len(train.digest) == 32
    assert profile["classes"] == 10 and profile["image_size"] == [8, 8]
    assert profile["split_sizes"]["train"] == profile["num_rows"]
    assert "mlflow_tensorspec" in json.loads(train.schema)
    (seed0,) = [
        r for r in _children(study, RunKind.promotion) if r.info.run_name == "promoted seed 0"
    ]
    assert {i.dataset.digest for i in seed0.inputs.dataset_inputs} == {
        i.dataset.digest for i in inputs
    }


def test_promoted_model_loads_predicts_and_is_registered(study: StudyFolder) -> None:
    client, _ = _client(study)
    (seed0,) = [
        r for r in _children(study, RunKind.promotion) if r.info.run_name == "promoted seed 0"
    ]
    (output,) = seed0.outputs.model_outputs
    old = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(study.mlflow_uri)
    try:
        model = mlflow.pyfunc.load_model(f"models:/{output.model_id}")
        example = study_data(parse_spec(study.read_state().spec), None).example
        logits = model.predict(example)
        assert logits.shape == (2, 10)
        inputs = model.metadata.get_input_schema().inputs
        assert list(inputs[0].shape) == [-1, 1, 8, 8]
        versions = client.search_model_versions(f"name = '{REGISTERED}'")
        assert [v.run_id for v in versions] == [seed0.info.run_id]
        assert "pixels / 255" in versions[0].description  # how to prepare an input
        logged = client.get_logged_model(output.model_id)
        spec = parse_spec(study.read_state().spec)
        assert logged.name == model_name(spec) == f"{spec.name}-student"
        assert logged.experiment_id == seed0.info.experiment_id
        # the run lasts its training (its epochs' seconds), not its logging afterwards
        epochs = RunDir(study.promotion_dir("best", 0)).read_metrics()
        trained_ms = 1000 * sum(e["seconds"] for e in epochs)
        assert abs((seed0.info.end_time - seed0.info.start_time) - trained_ms) <= 2
        assert logged.artifact_location.startswith(study.path.parent.resolve().as_uri())
    finally:
        mlflow.set_tracking_uri(old)


def test_logging_again_duplicates_nothing(study: StudyFolder) -> None:
    client, experiment = _client(study)
    state = study.read_state()
    spec = parse_spec(state.spec)
    tracking = _Tracking(client, study.mlflow_uri, experiment, state.parent_run_id)
    before = client.search_runs([experiment], max_results=100)
    # an unfinished seed run (a crash while it was logged) is logged afresh, once
    (seed1,) = [r for r in _children(study, RunKind.baseline) if r.data.tags[Tags.SEED] == "1"]
    client.update_run(seed1.info.run_id, status="RUNNING")
    best = state.spec["space"]
    config = {k: v["value"] for k, v in best.items()}
    for _ in range(2):
        log_study_inputs(tracking, spec, study, None, state.teacher)
        log_promotion(tracking, spec, study, state.promotion, config, None)
    after = client.search_runs([experiment], max_results=100)
    assert len(after) == len(before)
    names = [r.info.run_name for r in after]
    assert len(names) == len(set(names))
    assert all(r.info.status == "FINISHED" for r in after)
    versions = client.search_model_versions(f"name = '{REGISTERED}'")
    assert len(versions) == 1
    parent = client.get_run(state.parent_run_id)
    assert len(parent.inputs.dataset_inputs) == 2  # train and test, once each
    for key in ("teacher_test_top1", "promoted_test_top1_mean", "baseline_kd_seeds"):
        assert len(client.get_metric_history(state.parent_run_id, key)) == 1, key
    # the deleted unfinished run stays in MLflow's bin, not among the study's runs
    assert seed1.info.run_id not in {r.info.run_id for r in after}
    assert Path(study.path).is_dir()


def test_a_run_that_fails_while_logged_is_failed_then_logged_afresh(study: StudyFolder) -> None:
    client, experiment = _client(study)
    state = study.read_state()
    spec = parse_spec(state.spec)
    tracking = _Tracking(client, study.mlflow_uri, experiment, state.parent_run_id)
    config = {k: v["value"] for k, v in state.spec["space"].items()}
    (seed0,) = [r for r in _children(study, RunKind.promotion) if r.data.tags[Tags.SEED] == "0"]
    client.update_run(seed0.info.run_id, status="RUNNING")  # a crash while it was logged
    weights = RunDir(study.promotion_dir("best", 0)).last
    hidden = weights.rename(weights.with_suffix(".hidden"))
    try:
        with pytest.raises(CheckpointError):
            log_promotion(tracking, spec, study, state.promotion, config, None)
    finally:
        hidden.rename(weights)
    (failed,) = [r for r in _children(study, RunKind.promotion) if r.data.tags[Tags.SEED] == "0"]
    assert failed.info.status == "FAILED"  # not left RUNNING
    log_promotion(tracking, spec, study, state.promotion, config, None)
    (again,) = [r for r in _children(study, RunKind.promotion) if r.data.tags[Tags.SEED] == "0"]
    assert again.info.status == "FINISHED" and again.outputs.model_outputs
    versions = client.search_model_versions(f"name = '{REGISTERED}'")
    assert sorted(v.run_id for v in versions) == sorted([seed0.info.run_id, again.info.run_id])
