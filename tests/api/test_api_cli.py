"""`pcd study submit/list/show/trials` against the running service."""

from __future__ import annotations

import json
import subprocess

import pytest

from .conftest import VENV_BIN

pytestmark = pytest.mark.heavy  # a real server and study; tests/cli covers the commands in process


def _pcd(api, *args: str, token: str = "rw-token") -> subprocess.CompletedProcess:
    env = {**api.env, "PCD_API_URL": api.url, "PCD_API_TOKEN": token}
    return subprocess.run(
        [str(VENV_BIN / "pcd"), *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_submit_watch_list_show(api) -> None:
    sets = [
        "--set",
        "budget.trials=2",
        "--set",
        "budget.max_epochs=2",
        "--set",
        "teacher.epochs=2",
        "--set",
        "scheduler.type=none",
        "--set",
        "promotion.seeds=1",
        "--set",
        "promotion.baselines=[]",
    ]
    valid = _pcd(api, "study", "submit", "pcd-digits", "--validate-only", *sets)
    assert valid.returncode == 0 and valid.stdout.strip() == "valid"
    run = _pcd(api, "study", "submit", "pcd-digits", "--watch", *sets)
    assert run.returncode == 0, run.stderr
    assert "succeeded" in run.stdout and "promoted: test top-1" in run.stdout
    study_id = run.stdout.split()[1]
    listed = _pcd(api, "study", "list", token="ro-token")
    assert listed.returncode == 0 and "studies (1 of 1" in listed.stdout
    assert '"status": "succeeded"' in _pcd(api, "study", "show", study_id, "--json").stdout
    trials = _pcd(api, "study", "trials", study_id[:8], "--json")
    assert trials.returncode == 0 and len(json.loads(trials.stdout)["items"]) == 2

    bad = _pcd(api, "study", "submit", "pcd-digits", "--set", "budget.trials=0")
    assert bad.returncode == 2 and bad.stderr.startswith("error: ")
    assert "budget.trials" in bad.stderr and "Traceback" not in bad.stderr
    denied = _pcd(api, "study", "submit", "pcd-digits", *sets, token="ro-token")
    assert denied.returncode == 2 and "read-only" in denied.stderr
