"""Fault injection against the real topology: the API (`pcd serve`) on a Postgres study store
and an MLflow tracking server, each behind a TCP proxy that a test can cut, with study
drivers joining a real two-node Ray cluster (head 127.0.0.2, worker 127.0.0.3, token auth).

The cluster and the MLflow server are shared by the folder's tests (minutes of start-up
saved); the API, its store schema and the proxies are each test's own. Every test records
its figures (faults injected, studies finished, runs lost or duplicated) in
``faults-report.json`` under pytest's temporary folder, printed at the end of the session.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from pcd_testing.mlflow_audit import RunAudit, audit
from pcd_testing.processes import alive, matching, stop, tree, wait_for
from pcd_testing.proxy import TcpProxy
from pcd_testing.servers import (
    Api,
    RayCluster,
    drivers,
    postgres_schema,
    start_mlflow,
    stop_group,
)

from service.study_files import StudyFolder, Tags, child_runs_filter

# small studies: seconds of training each, so the folder fits its time budget
STUDY = {
    "search_space": "pcd-digits",
    "overrides": {
        "budget.trials": 2,
        "budget.max_epochs": 3,
        "teacher": {"checkpoint": "teacher.pt"},  # trained once for the session
        "scheduler.type": "none",
        "promotion.seeds": 0,
    },
}
FINISHED = {"succeeded", "failed", "cancelled"}
_REPORT: list[dict[str, Any]] = []


def study(trials: int = 2, epochs: int = 3, **more: Any) -> dict[str, Any]:
    overrides = {**STUDY["overrides"], "budget.trials": trials, "budget.max_epochs": epochs}
    return {**STUDY, "overrides": {**overrides, **more}}


@pytest.fixture(scope="session")
def cluster() -> Iterator[RayCluster]:
    ray = RayCluster(head_cpus=1, worker_cpus=1, workers=1)
    try:
        yield ray
    finally:
        ray.stop()


@pytest.fixture(scope="session")
def teacher_root(tmp_path_factory) -> Path:
    """A stored teacher (one epoch of cnn_small on digits), shared by the studies: each
    study would otherwise train its own on the cluster."""
    import shutil

    from pcd_core.train import TrainConfig, train

    root = tmp_path_factory.mktemp("teachers")
    config = TrainConfig(
        data={"name": "digits", "val_fraction": 0.1, "seed": 0}, arch="cnn_small", epochs=1
    )
    result = train(config, root / "run")
    assert result.teacher_artifact is not None
    shutil.copy(result.teacher_artifact, root / "teacher.pt")
    return root


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> Iterator[str]:
    proc, url = start_mlflow(tmp_path_factory.mktemp("mlflow"))
    try:
        yield url
    finally:
        stop_group(proc)


@dataclass
class Stack:
    api: Api
    db: TcpProxy  # between the API and Postgres
    mlflow: TcpProxy  # between the API, the drivers and the MLflow server
    mlflow_url: str  # the server itself (for audits)
    cluster: RayCluster
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def studies_dir(self) -> Path:
        return self.api.root / "studies"

    def submit(self, body: dict[str, Any]) -> str:
        with self.api.client() as c:
            response = c.post("/v1/studies", json=body)
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def get(self, study_id: str) -> dict[str, Any]:
        with self.api.client() as c:
            return c.get(f"/v1/studies/{study_id}").json()

    def wait(self, study_id: str, statuses: set[str], timeout: float = 120) -> dict[str, Any]:
        body: dict[str, Any] = {}

        def reached() -> bool:
            nonlocal body
            try:
                body = self.get(study_id)
            except httpx.HTTPError:  # the API restarting
                return False
            return body.get("status") in statuses

        assert wait_for(reached, timeout, 0.5), (study_id, body, self.logs(study_id))
        return body

    def running_trial(self, study_id: str, timeout: float = 120) -> None:
        """Wait until a trial of the study runs (its MLflow run is RUNNING)."""

        def running() -> bool:
            try:
                return self.get(study_id)["trials"]["running"] > 0
            except (httpx.HTTPError, KeyError):
                return False

        assert wait_for(running, timeout, 0.3), self.logs(study_id)

    def trial_nodes(self, study_id: str) -> dict[str, str]:
        """trial id -> the Ray node of its last result (its MLflow run's pcd.node_ip)."""
        from mlflow.tracking import MlflowClient

        state = StudyFolder(self.studies_dir / study_id).read_state()
        runs = MlflowClient(self.mlflow_url).search_runs(
            [state.experiment_id], child_runs_filter(state.parent_run_id)
        )
        return {r.data.tags[Tags.TRIAL_ID]: r.data.tags.get(Tags.NODE_IP, "") for r in runs}

    def nodes_running(self, study_id: str) -> dict[str, str]:
        """trial id -> Ray node of the study's running trials (their runs' pcd.node_ip)."""
        from mlflow.tracking import MlflowClient

        try:
            state = StudyFolder(self.studies_dir / study_id).read_state()
            if state is None or state.parent_run_id is None:  # no parent run yet
                return {}
            runs = MlflowClient(self.mlflow_url).search_runs(
                [state.experiment_id],
                f"{child_runs_filter(state.parent_run_id)} and attributes.status = 'RUNNING'",
            )
        except (OSError, ValueError):
            return {}
        return {
            r.data.tags[Tags.TRIAL_ID]: r.data.tags[Tags.NODE_IP]
            for r in runs
            if Tags.NODE_IP in r.data.tags
        }

    def logs(self, study_id: str) -> str:
        log = StudyFolder(self.studies_dir / study_id).driver_log
        api_log = self.api.root / "api.log"
        out = log.read_text()[-3000:] if log.is_file() else f"(no {log.name})"
        return out + "\n--- api.log\n" + (api_log.read_text()[-2000:] if api_log.is_file() else "")

    def audit(self, study_id: str) -> RunAudit:
        return audit(self.mlflow_url, self.studies_dir / study_id)

    def finished(self, study_id: str, trials: int) -> RunAudit:
        """The study succeeded with ``trials`` trials, each with exactly one MLflow run
        (none duplicated, none left RUNNING); its driver has exited."""
        done = self.wait(study_id, FINISHED, timeout=180)
        assert done["status"] == "succeeded", (done, self.logs(study_id))
        runs = self.audit(study_id)
        self.figures.setdefault("runs", {})[study_id] = runs.figures()
        self.figures["studies_finished"] = self.figures.get("studies_finished", 0) + 1
        runs.assert_one_run_per_trial(trials)
        with self.api.client() as c:
            listed = c.get(f"/v1/studies/{study_id}/trials").json()
        assert {t["trial_id"] for t in listed["items"]} >= set(runs.trials), listed
        assert wait_for(lambda: not drivers(study_id), 30, 0.3), "driver still running"
        return runs

    def fault(self, what: str) -> None:
        self.figures.setdefault("faults", []).append(what)


@pytest.fixture
def stack(request, tmp_path, cluster, mlflow_server, teacher_root) -> Iterator[Stack]:
    mlflow_host, mlflow_port = mlflow_server.removeprefix("http://").split(":")
    with postgres_schema() as url:
        db = TcpProxy(("127.0.0.1", 5432))
        mlflow = TcpProxy((mlflow_host, int(mlflow_port)))
        api = Api(tmp_path)
        api.env.update(
            PCD_DATABASE_URL=url.replace("127.0.0.1:5432", db.address),
            PCD_MLFLOW_TRACKING_URI=f"http://{mlflow.address}",
            PCD_RAY_ADDRESS=cluster.address,
            PCD_TEACHER_ROOT=str(teacher_root),
            RAY_AUTH_MODE=cluster.env["RAY_AUTH_MODE"],
            RAY_AUTH_TOKEN=cluster.env["RAY_AUTH_TOKEN"],
            RAY_USAGE_STATS_ENABLED="0",
        )
        s = Stack(api, db, mlflow, mlflow_server, cluster)
        started = time.monotonic()
        try:
            api.start()
            yield s
        finally:
            api.stop()
            # what is left of this test: drivers of its studies, anything below the API
            left = [p for p in tree(api.started) if alive(p)]
            left += [p for p in matching(str(tmp_path)) if p not in left]
            commands = [_command(p) for p in left if alive(p)]
            s.figures["orphans"] = [c for c in commands if c is not None]
            stop(left)
            db.close()
            mlflow.close()
            _REPORT.append(
                {
                    "test": request.node.name,
                    "seconds": round(time.monotonic() - started, 1),
                    **s.figures,
                }
            )
    assert not s.figures["orphans"], s.figures["orphans"]


def _command(p: psutil.Process) -> str | None:
    """A live process's command line; None once it has exited (a zombie: nothing reaps it)."""
    try:
        return " ".join(p.cmdline())[:200]
    except psutil.Error:
        return None


def pytest_sessionfinish(session) -> None:
    if not _REPORT:
        return
    base = session.config._tmp_path_factory.getbasetemp()  # pytest's own tmp folder
    path = Path(base) / "faults-report.json"
    path.write_text(json.dumps(_REPORT, indent=1))


def pytest_terminal_summary(terminalreporter) -> None:
    if not _REPORT:
        return
    terminalreporter.section("fault injection figures")
    for row in _REPORT:
        runs = row.get("runs", {}).values()
        terminalreporter.line(
            f"{row['test']}: faults {row.get('faults', [])}; "
            f"studies finished {row.get('studies_finished', 0)}; "
            f"runs lost {sum(r['runs_lost'] for r in runs)}, "
            f"duplicated {sum(r['runs_duplicated'] for r in runs)}, "
            f"left running {sum(r['runs_left_running'] for r in runs)}; "
            f"orphans {len(row.get('orphans', []))}; {row['seconds']} s"
        )
