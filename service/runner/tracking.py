"""An MLflow client that rides out a tracking server's outage: a call that fails for want of
the server (no connection, a timeout, a 5xx) is retried with exponential backoff for a bounded
time (PCD_MLFLOW_OUTAGE_S, default 15 minutes) before the error is raised. Errors the server
answered (4xx: a bad request, a missing run) are raised at once."""

from __future__ import annotations

import fcntl
import getpass
import logging
import os
import subprocess
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from service.study_files import (
    DEFAULT_EXPERIMENT_TAGS,
    EXPERIMENT,
    RUNS_EXPERIMENT,
    LocalMlflowStore,
    StudyFolder,
    Tags,
)

log = logging.getLogger(__name__)
OUTAGE_ENV = "PCD_MLFLOW_OUTAGE_S"
DEFAULT_OUTAGE_S = 900.0
FIRST_WAIT_S, MAX_WAIT_S = 1.0, 30.0


def transient(err: Exception) -> bool:
    """Whether ``err`` says the server was not there (rather than that it said no)."""
    if isinstance(err, MlflowException):
        return err.get_http_status_code() >= 500
    return isinstance(err, OSError | TimeoutError | ConnectionError)


def outage_budget_s() -> float:
    try:
        return float(os.environ.get(OUTAGE_ENV) or DEFAULT_OUTAGE_S)
    except ValueError:
        return DEFAULT_OUTAGE_S


def call_with_retry(fn: Callable[..., Any], *args: Any, budget_s: float, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, retried while it fails transiently and ``budget_s`` lasts."""
    deadline, wait = time.monotonic() + budget_s, FIRST_WAIT_S
    while True:
        try:
            return fn(*args, **kwargs)
        except Exception as err:
            if not transient(err) or time.monotonic() + wait > deadline:
                raise
            log.warning("MLflow unavailable (%s); retrying in %.0f s", type(err).__name__, wait)
            time.sleep(wait)
            wait = min(wait * 2, MAX_WAIT_S)


class RetryingClient:
    """An MlflowClient whose every method is called through call_with_retry."""

    def __init__(self, tracking_uri: str, budget_s: float | None = None) -> None:
        self._client = MlflowClient(tracking_uri)
        self.budget_s = outage_budget_s() if budget_s is None else budget_s

    @property
    def tracking_uri(self) -> str:
        return self._client.tracking_uri

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def retried(*args: Any, **kwargs: Any) -> Any:
            return call_with_retry(attr, *args, budget_s=self.budget_s, **kwargs)

        return retried


def open_local_store(root: Path) -> str:
    """The URI of the shared local MLflow store in ``root`` (study_files.LocalMlflowStore),
    created on first use with its experiments (artifacts in ``root/mlartifacts``).

    Under a file lock: two processes that open a new SQLite store at once would both run
    MLflow's migrations, and the second fails."""
    store = LocalMlflowStore(Path(root))
    Path(root).mkdir(parents=True, exist_ok=True)
    with open(Path(root) / ".mlflow.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        client = MlflowClient(store.uri)
        for name in (EXPERIMENT, RUNS_EXPERIMENT):
            if client.get_experiment_by_name(name) is None:
                client.create_experiment(
                    name, artifact_location=store.artifacts_uri, tags=DEFAULT_EXPERIMENT_TAGS
                )
    return store.uri


def local_tracking_uri(folder: StudyFolder, root: Path) -> str:
    """Where a study tracks its runs when no tracking URI is set (StudyFolder.tracking_uri),
    the shared store opened first when it is that."""
    uri = folder.tracking_uri(LocalMlflowStore(Path(root)))
    return uri if uri == folder.mlflow_uri else open_local_store(root)


SOURCE_NAME = "pcd study"


@cache
def _git_commit() -> str | None:
    """The commit of the checkout this code runs from; None outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and len(commit) == 40 else None


def system_tags(source_name: str = SOURCE_NAME, source_type: str = "JOB") -> dict[str, str]:
    """MLflow's system tags of a run pcd creates: who (mlflow.user), what (the source's name
    and type: a study's driver is a JOB, ``pcd distill`` LOCAL) and, from a git checkout,
    which commit (best effort)."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no user name in this container
        user = str(os.getuid())
    tags = {Tags.USER: user, Tags.SOURCE_NAME: source_name, Tags.SOURCE_TYPE: source_type}
    commit = _git_commit()
    if commit:
        tags[Tags.GIT_COMMIT] = commit
    return tags
