"""MLflow tracking of single runs (`pcd distill`, `pcd teacher train`): pcd_core's run tracker
(``pcd_core.cli.set_run_tracker``), set by the ``pcd`` entry point.

One MLflow run per command in the experiment ``pcd-runs``, on the tracking server
(``PCD_MLFLOW_TRACKING_URI``) or else in the local store that studies share
(``PCD_MLFLOW_LOCAL_DIR``): the TrainConfig flattened as params, the epoch metrics with the
epoch as step, the test metrics at the end, the run folder's metrics.jsonl, summary.json and
checkpoint (up to MAX_CHECKPOINT_BYTES) as artifacts; FAILED with the reason (``pcd.error``)
when the run fails, KILLED on Ctrl-C. ``--resume`` continues the run folder's MLflow run.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from pcd_core.run_dir import RunDir
from pcd_core.train import EpochMetrics, RunResult, TrainConfig
from service import mlflow_links
from service.runner.tracking import RetryingClient, open_local_store, system_tags
from service.settings import DEFAULT_MLFLOW_LOCAL_DIR, RunnerSettings
from service.study_files import DEFAULT_EXPERIMENT_TAGS, RUNS_EXPERIMENT, Tags

log = logging.getLogger(__name__)
MAX_CHECKPOINT_BYTES = 256 * 1024**2  # larger checkpoints stay in the run folder only
MAX_PARAM_CHARS = 6000  # MLflow's limit of a param value
RUN_ID_FILE = "mlflow-run.txt"  # in the run folder: the run --resume continues
SOURCES = {"teacher": "pcd teacher train", "distill": "pcd distill"}
KIND_TAG, RUN_DIR_TAG = Tags.KIND, "pcd.run_dir"


def flat_params(config: TrainConfig) -> dict[str, str]:
    """The config as MLflow params: nested fields as ``data.name``, values as text."""
    out: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, sub in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), sub)
            return
        text = value if isinstance(value, str) else json.dumps(value)
        out[prefix] = text[:MAX_PARAM_CHARS]

    walk("", config.model_dump(mode="json"))
    return out


def _experiment(client: Any) -> str:
    experiment = client.get_experiment_by_name(RUNS_EXPERIMENT)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(RUNS_EXPERIMENT, tags=DEFAULT_EXPERIMENT_TAGS)


def _previous_run(client: Any, out_dir: Path) -> str | None:
    """The MLflow run of the run folder (for --resume), if it still exists."""
    try:
        run_id = (out_dir / RUN_ID_FILE).read_text().strip()
        client.get_run(run_id)
    except Exception:
        return None
    return run_id


class MlflowRun:
    """One pcd_core run as an MLflow run (pcd_core.cli.TrackedRun)."""

    def __init__(self, client: Any, experiment_id: str, run_id: str, out_dir: Path) -> None:
        self.client, self.experiment_id, self.run_id = client, experiment_id, run_id
        self.run_dir = RunDir(out_dir)
        self.public_url = RunnerSettings.from_env().mlflow_public_url

    def on_epoch_end(self, metrics: EpochMetrics, checkpoint_dir: Path) -> None:
        # the folder names its run once an epoch is recorded there (what --resume continues);
        # written earlier, a run that fails while setting up would leave its folder behind
        run_id_file = self.run_dir.path / RUN_ID_FILE
        if not run_id_file.is_file():
            run_id_file.write_text(self.run_id + "\n")
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, metrics.epoch) for k, v in metrics.scalars().items()]
        self.client.log_batch(self.run_id, metrics=batch)

    def finished(self, result: RunResult) -> list[str]:
        now, metrics = int(time.time() * 1000), []
        for which, scores in result.test.items():
            for key, value in scores.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    metrics.append(Metric(f"test_{which}_{key}", float(value), now, 0))
        metrics.append(Metric("best_val_top1", float(result.best_val_top1), now, 0))
        self.client.log_batch(self.run_id, metrics=metrics)
        if result.teacher_hash:
            self.client.set_tag(self.run_id, "pcd.teacher_hash", result.teacher_hash)
        self._log_artifacts()
        status = "FINISHED" if result.completed else "KILLED"
        self.client.set_terminated(self.run_id, status)
        return mlflow_links.open_lines(
            self.client.tracking_uri, self.public_url, self.experiment_id, self.run_id
        )

    def _log_artifacts(self) -> None:
        for path in (self.run_dir.metrics, self.run_dir.summary):
            if path.is_file():
                self.client.log_artifact(self.run_id, str(path))
        candidates = (self.run_dir.teacher, self.run_dir.best, self.run_dir.last)
        checkpoint = next((p for p in candidates if p.is_file()), None)
        if checkpoint is None:
            return
        size = checkpoint.stat().st_size
        if size > MAX_CHECKPOINT_BYTES:
            note = f"{checkpoint.name} not logged: {size} bytes > {MAX_CHECKPOINT_BYTES}"
            self.client.set_tag(self.run_id, "pcd.checkpoint", note)
            return
        self.client.log_artifact(self.run_id, str(checkpoint), "checkpoint")

    def failed(self, reason: str, interrupted: bool) -> None:
        """Close the run FAILED (KILLED on Ctrl-C) with the reason. Best effort, without
        retries: MLflow itself may be why the run failed."""
        try:
            client = MlflowClient(self.client.tracking_uri)
            client.set_tag(self.run_id, Tags.ERROR, reason[:5000])
            client.set_terminated(self.run_id, "KILLED" if interrupted else "FAILED")
        except Exception:
            log.warning("could not mark the MLflow run %s failed", self.run_id, exc_info=True)


def start_run(kind: str, config: TrainConfig, out_dir: Path, resume: bool = False) -> MlflowRun:
    """Start (or, with ``resume``, reopen the run folder's) MLflow run of a `pcd` command."""
    settings = RunnerSettings.from_env()
    local_dir = settings.mlflow_local_dir or DEFAULT_MLFLOW_LOCAL_DIR
    uri = settings.tracking_uri or open_local_store(local_dir)
    client = RetryingClient(uri)  # rides out a tracking server's outage
    experiment_id = _experiment(client)
    out_dir = Path(out_dir)
    run_id = _previous_run(client, out_dir) if resume else None
    if run_id is not None:
        client.update_run(run_id, "RUNNING")
        return MlflowRun(client, experiment_id, run_id, out_dir)
    tags = {
        Tags.RUN_NAME: out_dir.name,
        **system_tags(SOURCES.get(kind, f"pcd {kind}"), "LOCAL"),
        KIND_TAG: kind,
        RUN_DIR_TAG: str(out_dir.resolve()),
    }
    run_id = client.create_run(experiment_id, tags=tags).info.run_id
    params = [Param(k, v) for k, v in flat_params(config).items()]
    for i in range(0, len(params), 100):  # MLflow takes at most 100 params a batch
        client.log_batch(run_id, params=params[i : i + 100])
    return MlflowRun(client, experiment_id, run_id, out_dir)
