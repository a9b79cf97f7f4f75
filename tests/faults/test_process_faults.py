"""kill -9 of a process mid-study: the API, the study driver, a Ray worker node. The study
finishes anyway, with one MLflow run per trial and nothing left running."""

from __future__ import annotations

import pytest
from pcd_testing.processes import kill9, wait_for
from pcd_testing.servers import drivers

from .conftest import Stack, study

pytestmark = pytest.mark.slow  # real processes: a study each


def test_api_killed_mid_study_then_restarted_on_the_same_store(stack: Stack) -> None:
    study_id = stack.submit(study(trials=2, epochs=3))
    stack.running_trial(study_id)
    stack.api.kill()
    stack.fault("kill -9 API")
    assert drivers(study_id), "the driver must outlive the API (its own session)"
    stack.api.start()  # same port, same store
    runs = stack.finished(study_id, trials=2)
    assert stack.get(study_id)["attempts"] == 1  # the driver was tracked again, not relaunched
    assert not runs.deleted


def test_driver_killed_mid_study_is_relaunched_and_resumes(stack: Stack) -> None:
    study_id = stack.submit(study(trials=2, epochs=3))
    stack.running_trial(study_id)
    (driver,) = drivers(study_id)
    kill9(driver.pid)
    stack.fault("kill -9 study driver")
    relaunched = wait_for(lambda: [d for d in drivers(study_id) if d.pid != driver.pid], 30, 0.2)
    assert relaunched and len(relaunched) == 1, relaunched
    stack.finished(study_id, trials=2)  # one parent run, one run per trial
    done = stack.get(study_id)
    assert done["attempts"] == 2
    assert done["links"]["mlflow"].startswith(f"http://{stack.mlflow.address}"), done["links"]


def test_ray_worker_node_killed_mid_study(stack: Stack) -> None:
    worker = "127.0.0.3"
    # six epochs: the kill lands mid-trial. With three, a loaded machine could see the trial's
    # last epoch reported (or checkpointed) before the kill, so that it finished on the worker
    # and had nothing to reschedule (a fresh-clone run failed so)
    study_id = stack.submit(study(trials=2, epochs=6))
    # a trial of the study runs on the worker (each node has one CPU: one trial each)
    on_worker = wait_for(
        lambda: [t for t, node in stack.nodes_running(study_id).items() if node == worker],
        120,
        0.3,
    )
    assert on_worker, stack.logs(study_id)
    killed = stack.cluster.kill_node(worker)
    stack.fault(f"kill -9 Ray worker node {worker} ({killed} processes)")
    try:
        runs = stack.finished(study_id, trials=2)
    finally:
        stack.cluster.add_worker()  # the cluster keeps two nodes for the other tests
    # the trial that ran on the dead node was rescheduled and finished on the head
    nodes = stack.trial_nodes(study_id)
    moved = [t for t in on_worker if nodes.get(t) == "127.0.0.2"]
    stack.figures["trials_rescheduled"] = len(moved)
    assert moved, (on_worker, nodes)
    assert set(on_worker) <= set(runs.trials)
