"""A study driver killed mid-study is resumed by the supervisor; Postgres store, MLflow server."""

from __future__ import annotations

import os
import signal
import time

import httpx
import psutil

from service.study_files import Tags

from .conftest import RW, Api
from .test_api_basics import SMALL
from .test_api_lifecycle import _wait


def _driver(study_id: str) -> psutil.Process | None:
    for p in psutil.process_iter(["cmdline"]):
        if any(study_id in part for part in (p.info["cmdline"] or [])) and any(
            "service.runner.launch" in part for part in (p.info["cmdline"] or [])
        ):
            return p
    return None


def test_killed_driver_is_resumed(tmp_path, mlflow_server, postgres_url) -> None:
    api = Api(tmp_path)
    api.env.update(PCD_DATABASE_URL=postgres_url, PCD_MLFLOW_TRACKING_URI=mlflow_server)
    api.start()
    try:
        with api.client(headers=RW) as c:
            assert c.get("/readyz").json()["checks"]["mlflow"] == "ok"
            body = {**SMALL, "overrides": {**SMALL["overrides"], "budget.max_epochs": 6}}
            study_id = c.post("/v1/studies", json=body).json()["id"]
            _wait(c, study_id, {"running"}, timeout=30)
            deadline = time.monotonic() + 120
            while c.get(f"/v1/studies/{study_id}").json()["trials"]["running"] == 0:
                assert time.monotonic() < deadline, "no trial started"
                time.sleep(0.5)
            driver = _driver(study_id)
            assert driver is not None
            os.killpg(driver.pid, signal.SIGKILL)
            done = _wait(c, study_id, {"succeeded", "failed"})
            assert done["status"] == "succeeded", done
            assert done["attempts"] == 2
            assert done["links"]["mlflow"].startswith(mlflow_server)
            trials = c.get(f"/v1/studies/{study_id}/trials").json()
            assert trials["total"] == 2  # one MLflow run per trial, none duplicated
        runs = httpx.post(
            f"{mlflow_server}/api/2.0/mlflow/runs/search",
            json={"experiment_ids": ["1"], "max_results": 100},
        ).json()
        parents = [
            r
            for r in runs["runs"]
            if not any(t["key"] == Tags.PARENT_RUN for t in r["data"].get("tags", []))
        ]
        assert len(parents) == 1
    finally:
        api.stop()
        driver = _driver(study_id) if "study_id" in dir() else None
        if driver is not None:
            driver.kill()
