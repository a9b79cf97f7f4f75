"""Failures that must not look like success: diverging trials, a study without a completed
trial, a resource request no node can hold. `pcd study run` on a local Ray, as in
test_study_local, with its local MLflow store read back."""

from __future__ import annotations

import json
from pathlib import Path

from mlflow.tracking import MlflowClient

from service.runner.resources import NodeShape, infeasible, live_shapes
from service.study_files import EXPERIMENT, StudyFolder, Tags, TrialOutcome

from .conftest import cli_env, run_cli

# cnn_small at lr 10, momentum 0.99 diverges (NaN loss) in its first epoch; at 0.01 it learns
DIVERGE = [
    "--set", "student=cnn_small",
    "--set", "training.momentum=0.99",
    "--set", "sampler.type=grid",
]  # fmt: skip
COMMON = [
    "--set", "teacher.epochs=1",
    "--set", "budget.max_epochs=2",
    "--set", "scheduler.type=none",
    "--set", "promotion.seeds=0",
    "--set", "promotion.baselines=[]",
    "--set", "max_failures=0",
    "--num-cpus", "2",
    "--quiet",
]  # fmt: skip


def _env() -> dict[str, str]:
    return cli_env()


def _run(study_dir: Path, *sets: str):
    args = ["study", "run", "pcd-digits", "--out", str(study_dir), *COMMON, *sets]
    # the local MLflow store in the study's folder: each test reads its own study's runs
    return run_cli(args, {**_env(), "PCD_MLFLOW_LOCAL_DIR": str(study_dir)})


def _runs(study_dir: Path):
    client = MlflowClient(StudyFolder(study_dir).mlflow_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parents = [r for r in runs if Tags.PARENT_RUN not in r.data.tags]
    children = [r for r in runs if Tags.TRIAL_ID in r.data.tags]  # trials (not promotion)
    return parents, children


def test_a_diverging_trial_fails_alone_under_a_val_loss_objective(tmp_path) -> None:
    study_dir = tmp_path / "mixed"
    proc = _run(
        study_dir,
        *DIVERGE,
        "--set", "space={lr: {type: categorical, choices: [0.01, 10.0]}}",
        "--set", "budget.trials=2",
        "--set", "objective={metric: val_loss, mode: min}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(StudyFolder(study_dir).summary_file.read_text())
    by_lr = {t["config"]["lr"]: t for t in summary["trials"]}
    assert by_lr[10.0]["status"] == "ERROR"
    assert by_lr[10.0]["error"].startswith("NonFiniteLoss: loss is nan at epoch 1, step ")
    assert by_lr[0.01]["status"] == "TERMINATED" and by_lr[0.01]["error"] is None
    assert summary["best_trial_id"] == by_lr[0.01]["trial_id"]

    parents, children = _runs(study_dir)
    assert parents[0].info.status == "FINISHED"
    assert parents[0].data.tags[Tags.FAILED_TRIALS] == "1"
    errors = json.loads(parents[0].data.tags[Tags.TRIAL_ERRORS])
    assert errors == {by_lr[10.0]["trial_id"]: by_lr[10.0]["error"]}
    failed = {c.data.tags[Tags.TRIAL_ID]: c for c in children if c.info.status == "FAILED"}
    assert set(failed) == {by_lr[10.0]["trial_id"]}
    run = failed[by_lr[10.0]["trial_id"]]
    assert run.data.tags[Tags.OUTCOME] == TrialOutcome.failed
    assert run.data.tags[Tags.ERROR] == by_lr[10.0]["error"]
    assert [c.info.status for c in children].count("RUNNING") == 0
    # a failed trial's epochs do not count: no best value to sort the runs table by
    assert "best_val_loss" not in run.data.metrics and Tags.BEST not in run.data.tags
    assert run.data.tags[Tags.NOTE].startswith("Failed after 0 of 2 epochs: NonFiniteLoss")
    (winner,) = [c for c in children if c.data.tags.get(Tags.BEST) == "true"]
    assert winner.data.tags[Tags.TRIAL_ID] == summary["best_trial_id"]
    assert winner.data.metrics["best_val_loss"] == by_lr[0.01]["best"]


def test_a_study_without_a_completed_trial_fails(tmp_path) -> None:
    study_dir = tmp_path / "all-failed"
    proc = _run(
        study_dir,
        *DIVERGE,
        "--set", "space={lr: {type: categorical, choices: [10.0]}}",
        "--set", "budget.trials=1",
    )  # fmt: skip
    assert proc.returncode == 1
    error = proc.stderr.strip().splitlines()[-1]  # Tune logs the trial's traceback before it
    assert error.startswith("error: no trial completed: 1 of 1 trials failed; trial ")
    assert "NonFiniteLoss: loss is nan at epoch 1" in error
    assert not StudyFolder(study_dir).summary_file.exists()

    parents, children = _runs(study_dir)
    parent = parents[0]
    assert parent.info.status == "FAILED" and parent.data.tags[Tags.FAILED_TRIALS] == "1"
    assert parent.data.tags[Tags.ERROR].startswith("StudyError: no trial completed")
    assert [c.info.status for c in children] == ["FAILED"]
    assert children[0].data.tags[Tags.ERROR].startswith("NonFiniteLoss: loss is nan")


def test_a_request_no_node_can_hold_fails_at_once(tmp_path) -> None:
    study_dir = tmp_path / "gpu"
    proc = _run(study_dir, "--set", "resources.gpus=1", "--set", "budget.trials=1")
    assert proc.returncode == 1
    assert "resources.gpus=1: no node of the cluster has a GPU (nodes: " in proc.stderr
    assert "2 CPU, 0 GPU" in proc.stderr
    assert not (study_dir / "teacher").exists()  # failed before any task was queued
    parents, _ = _runs(study_dir)
    assert parents[0].info.status == "FAILED"
    assert parents[0].data.tags[Tags.ERROR].startswith("StudyError: resources.gpus=1")


CPU_NODES = [NodeShape("10.0.0.1", 8, 0), NodeShape("10.0.0.2", 4, 0)]
GPU_NODES = [NodeShape("10.0.0.3", 16, 2), NodeShape("node type gpu", 8, 4)]


def test_feasibility_is_per_node() -> None:
    assert infeasible(8, 0, CPU_NODES) is None and infeasible(8, 4, GPU_NODES) is None
    assert infeasible(1, 1, CPU_NODES) == (
        "resources.gpus=1: no node of the cluster has a GPU "
        "(nodes: 10.0.0.1: 8 CPU, 0 GPU; 10.0.0.2: 4 CPU, 0 GPU)"
    )
    assert infeasible(12, 0, CPU_NODES).startswith(  # 12 CPUs in all, but on no one node
        "resources.cpus=12: no node of the cluster has 12 CPUs (nodes: "
    )
    assert infeasible(1, 8, GPU_NODES).startswith("resources.gpus=8: no node of the cluster has 8")
    assert infeasible(16, 4, GPU_NODES).startswith(
        "resources: no node of the cluster has 16 CPUs and 4 GPUs together"
    )
    many = [NodeShape(f"10.0.1.{i}", 1, 0) for i in range(20)]
    assert infeasible(2, 0, many).endswith("10.0.1.7: 1 CPU, 0 GPU; and 12 more)")


def test_dead_nodes_do_not_count() -> None:
    nodes = [
        {"Alive": True, "NodeManagerAddress": "10.0.0.1", "Resources": {"CPU": 2.0}},
        {"Alive": False, "NodeManagerAddress": "10.0.0.9", "Resources": {"CPU": 64.0, "GPU": 8}},
    ]
    assert live_shapes(nodes) == [NodeShape("10.0.0.1", 2.0, 0.0)]
