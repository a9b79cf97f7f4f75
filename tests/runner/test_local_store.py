"""The one local MLflow store (study_files.LocalMlflowStore) that local studies and single
runs share: processes that open it for the first time at once (MLflow's migrations run under
a file lock) and then write to it at once (SQLite serialises the writes) all succeed."""

from __future__ import annotations

import subprocess
import sys

from mlflow.tracking import MlflowClient

from service.study_files import EXPERIMENT, RUNS_EXPERIMENT, LocalMlflowStore

WRITER = """
import sys, time
from pathlib import Path
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from service.runner.tracking import open_local_store
from service.study_files import EXPERIMENT

client = MlflowClient(open_local_store(Path(sys.argv[1])))
experiment = client.get_experiment_by_name(EXPERIMENT).experiment_id
for _ in range(2):  # a study's trials: a run each, metrics and a tag every epoch
    run = client.create_run(experiment, tags={"writer": sys.argv[2]}).info.run_id
    for epoch in range(5):
        now = int(time.time() * 1000)
        client.log_batch(run, metrics=[Metric(f"m{i}", epoch, now, epoch) for i in range(8)])
        client.set_tag(run, "pcd.epochs", str(epoch))
    client.set_terminated(run, "FINISHED")
"""


def test_processes_share_a_new_store_at_once(tmp_path) -> None:
    root = tmp_path / "home"
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(root), str(i)], stderr=subprocess.PIPE)
        for i in range(2)
    ]
    errors = [w.communicate(timeout=300)[1].decode() for w in writers]
    assert [w.returncode for w in writers] == [0, 0], errors
    store = LocalMlflowStore(root)
    client = MlflowClient(store.uri)
    runs = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    assert sorted(r.data.tags["writer"] for r in runs) == ["0", "0", "1", "1"]
    assert all(r.info.status == "FINISHED" and r.data.metrics["m7"] == 4 for r in runs)
    for name in (EXPERIMENT, RUNS_EXPERIMENT):  # made once, artifacts beside the database
        experiment = client.get_experiment_by_name(name)
        assert experiment.artifact_location == store.artifacts_uri
        assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
