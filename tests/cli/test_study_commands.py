"""`pcd study ...` against the API in this process (no server, no driver): id prefixes,
delete, tables and --json, the watch progress bar, and errors that say what to do."""

from __future__ import annotations

import json
import socket
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pcd_testing.app import app_without_drivers
from typer.testing import CliRunner, Result

from service import api_commands
from service.cli import app
from service.client import PcdClient
from service.settings import Settings
from service.store import Store, StudyStatus
from service.study_files import StudyFolder, StudyState, StudySummary

runner = CliRunner()
SPEC = {"budget": {"trials": 4}}


def invoke(*args: str, input: str | None = None) -> Result:
    return runner.invoke(app, list(args), input=input)


def one_error_line(result: Result, code: int) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


class _Through(httpx.BaseTransport):
    """Requests of a PcdClient sent through FastAPI's TestClient (the app in this process)."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.client.send(request)
        return httpx.Response(
            response.status_code, headers=response.headers, content=response.content
        )


@pytest.fixture
def store(tmp_path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """The app in this process, the study commands connected to it; its store, to seed."""
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'pcd.db'}",
        api_tokens="rw-token:rw",
        studies_dir=tmp_path / "studies",
        data_root=tmp_path / "data",
        teacher_root=tmp_path / "teachers",
        warm_driver=False,
    )
    api = app_without_drivers(settings)
    with TestClient(api, raise_server_exceptions=False) as client:
        transport = _Through(client)
        monkeypatch.setattr(
            api_commands,
            "connect",
            lambda: PcdClient("http://testserver", token="rw-token", transport=transport),
        )
        yield api.state.store


def finished(store: Store, status: StudyStatus = StudyStatus.succeeded) -> str:
    record, _ = store.create("demo", SPEC)
    store.transition(record.id, StudyStatus.running, driver="pid:1")
    store.transition(record.id, status)
    return record.id


# --------------------------------------------------------------------------- id prefixes
def test_every_study_command_takes_the_short_id_that_list_prints(store: Store) -> None:
    record, _ = store.create("demo", SPEC)
    listed = invoke("study", "list")
    assert listed.exit_code == 0, listed.output
    short = record.id[:8]
    assert short in listed.stdout and record.id not in listed.stdout
    shown = invoke("study", "show", short, "--json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["id"] == record.id
    trials = invoke("study", "trials", short, "--json")
    assert trials.exit_code == 0 and json.loads(trials.stdout)["items"] == []
    assert invoke("study", "cancel", short).stdout.strip() == "cancelled"
    assert invoke("study", "resume", short).stdout.strip() == "queued"
    assert invoke("study", "show", record.id, "--json").exit_code == 0  # the full id too


def test_an_unknown_or_ambiguous_prefix_is_a_clear_error(store: Store) -> None:
    by_first: dict[str, list[str]] = defaultdict(list)
    for _ in range(17):  # 16 hex digits: two ids share a first one
        record, _ = store.create("demo", SPEC)
        by_first[record.id[0]].append(record.id)
    prefix, ids = next((k, v) for k, v in by_first.items() if len(v) > 1)
    line = one_error_line(invoke("study", "show", prefix), 2)
    assert f"{prefix!r} matches {len(ids)} studies" in line
    assert all(i[:12] in line for i in ids) and "more characters" in line
    missing = "zz"  # ids are hex
    for command in ("show", "trials", "cancel", "resume", "delete", "watch"):
        line = one_error_line(invoke("study", command, missing), 2)
        assert f"no study id starts with {missing!r}" in line


# -------------------------------------------------------------------------------- delete
def test_delete_asks_unless_yes_and_refuses_a_running_study(store: Store) -> None:
    done = finished(store)
    declined = invoke("study", "delete", done[:8], input="n\n")
    assert declined.exit_code != 0 and store.get(done) is not None
    deleted = invoke("study", "delete", done[:8], input="y\n")
    assert deleted.exit_code == 0, deleted.output
    assert store.get(done) is None
    other = finished(store, StudyStatus.cancelled)
    assert invoke("study", "delete", other, "--yes").exit_code == 0
    assert store.get(other) is None

    record, _ = store.create("demo", SPEC)
    store.transition(record.id, StudyStatus.running, driver="pid:1")
    line = one_error_line(invoke("study", "delete", record.id[:8], "--yes"), 2)
    assert "running" in line and "cancel it first" in line
    assert store.get(record.id) is not None


# ------------------------------------------------------------------------ tables, --json
def test_show_is_a_table_and_json_on_request(store: Store) -> None:
    study_id = finished(store)
    table = invoke("study", "show", study_id[:8])
    assert table.exit_code == 0, table.output
    assert "{" not in table.stdout  # not JSON
    for text in (study_id, "succeeded", "0 of 4 done", "MLflow"):
        assert text in table.stdout, table.stdout
    raw = json.loads(invoke("study", "show", study_id[:8], "--json").stdout)
    assert raw["status"] == "succeeded" and raw["trials"]["pending"] == 4


PROMOTION = {  # as the runner writes it (tests/runner/test_promotion_tracking.py)
    "best": {"mean": 98.33, "std": 0.56, "seeds": 3, "test_top1": [98.0, 98.0, 99.0]},
    "baseline_kd": {
        "mean": 97.31, "std": 0.16, "seeds": 3, "test_top1": [97.2, 97.25, 97.5],
        "at_defaults": True, "options": {"temperature": 4.0, "ce_weight": 0.1},
        "paired_vs_promoted": {
            "mean": 1.02, "std": 0.32, "ci95": 0.8, "wins": 3, "n": 3,
            "verdict": "promoted better",
        },
    },
}  # fmt: skip


def test_show_labels_a_baseline_at_defaults_with_its_paired_difference(
    store: Store, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = StudyFolder(tmp_path / "promoted")
    folder.path.mkdir()
    folder.write_state(StudyState())
    summary = StudySummary(
        name="demo", study_dir=folder.path, parent_run_id="r", tracking_uri="sqlite://",
        best_config={}, best_value=None, best_trial_id=None, trials=[], promotion=PROMOTION,
    )  # fmt: skip
    folder.write_summary(summary)
    record, _ = store.create("demo", SPEC)
    store.transition(record.id, StudyStatus.running, driver="pid:1", study_dir=str(folder.path))
    store.transition(record.id, StudyStatus.succeeded)
    raw = json.loads(invoke("study", "show", record.id[:8], "--json").stdout)
    kd = raw["promotion"]["baseline_kd"]  # the API's typed PromotionResult
    assert kd["at_defaults"] is True and kd["options"]["ce_weight"] == 0.1
    assert kd["paired_vs_promoted"] == PROMOTION["baseline_kd"]["paired_vs_promoted"]
    assert raw["promotion"]["best"]["at_defaults"] is None
    monkeypatch.setenv("COLUMNS", "240")  # rich's width: no cell wraps
    table = invoke("study", "show", record.id[:8])
    assert table.exit_code == 0, table.output
    rows = {
        cells[1].strip(): cells[2].strip()
        for line in table.stdout.splitlines()
        if len(cells := line.split("│")) == 4
    }
    assert rows["kd (at defaults)"] == "test top-1 97.31 ± 0.16 (3 seeds)", table.stdout
    assert rows["promoted"] == "test top-1 98.33 ± 0.56 (3 seeds)"
    line = "promoted − kd (at defaults): +1.02 ± 0.80 points (95% CI, 3 seeds) → promoted better"
    assert rows["paired"] == line
    assert "pcd compare" in rows["note"]


def test_list_is_a_table_and_json_on_request(store: Store) -> None:
    done = finished(store)
    queued, _ = store.create("later", SPEC)
    table = invoke("study", "list")
    assert table.exit_code == 0, table.output
    assert "{" not in table.stdout and "studies (2 of 2, newest first)" in table.stdout
    rows = {line.split("│")[1].strip(): line for line in table.stdout.splitlines() if "│" in line}
    assert set(rows) == {done[:8], queued.id[:8]}  # (the header row is drawn with ┃)
    assert "succeeded" in rows[done[:8]] and "0/4" in rows[done[:8]]
    assert "later" in rows[queued.id[:8]] and "queued" in rows[queued.id[:8]]
    page = json.loads(invoke("study", "list", "--json").stdout)
    assert page["total"] == 2 and {s["id"] for s in page["items"]} == {done, queued.id}


class _FakeClient:
    """What the watch and trials commands read, from a scripted sequence of answers."""

    def __init__(self, updates: list[dict[str, Any]], trials: list[dict[str, Any]]) -> None:
        self.updates, self.trial_items = updates, trials

    def __enter__(self) -> _FakeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def resolve(self, prefix: str) -> str:
        return "f" * 32

    def trials(self, study_id: str, limit: int = 50) -> dict[str, Any]:
        items = self.trial_items
        return {"items": items, "total": len(items), "offset": 0, "limit": limit}

    def wait(self, study_id: str, *, poll: float, on_update: Callable[[dict], None]) -> dict:
        for study in self.updates:
            on_update(study)
        return self.updates[-1]


def _study(status: str, completed: int, running: int, best: float | None) -> dict[str, Any]:
    return {
        "id": "f" * 32,
        "name": "demo",
        "status": status,
        "trials": {
            "pending": 4 - completed - running,
            "running": running,
            "completed": completed,
            "stopped_early": 0,
            "failed": 0,
        },
        "best": {"value": best, "trial_id": "t1", "config": {}},
        "promotion": {},
        "links": {
            "self": "s",
            "trials": "t",
            "mlflow": "http://mlflow.example/#/experiments/1/runs/r1?workflowType=machine_learning",
            "mlflow_experiment": "http://mlflow.example/#/experiments/1?workflowType=machine_learning",
        },
    }


def test_trials_are_a_table_of_typed_values(monkeypatch: pytest.MonkeyPatch) -> None:
    trial = {
        "trial_id": "a1b2", "status": "TERMINATED", "outcome": "completed", "epochs": 10,
        "config": {"stages": 3, "temperature": 4.123456}, "best": 91.25, "last": {},
        "error": None, "mlflow_run_id": "r",
    }  # fmt: skip
    monkeypatch.setattr(api_commands, "connect", lambda: _FakeClient([], [trial]))
    result = invoke("study", "trials", "ffff")
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if "a1b2" in line)
    for text in ("completed", "10", "91.25", "stages=3"):
        assert text in row, row
    assert "temperature=4.123" in result.stdout  # the config column may wrap
    assert "'" not in result.stdout  # values, not a dict of strings
    assert json.loads(invoke("study", "trials", "ffff", "--json").stdout)["items"] == [trial]


# --------------------------------------------------------------------------------- watch
def test_watch_shows_trials_of_the_budget_best_so_far_and_the_mlflow_link(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    updates = [
        _study("running", 1, 2, 80.0),
        _study("running", 3, 1, 90.5),
        _study("succeeded", 4, 0, 91.5),
    ]
    monkeypatch.setattr(api_commands, "connect", lambda: _FakeClient(updates, []))
    result = invoke("study", "watch", "ffff")
    assert result.exit_code == 0, result.output
    assert "4/4" in result.stdout and "trials" in result.stdout and "ETA" in result.stdout
    assert "best 91.5" in result.stdout
    assert result.stdout.strip().splitlines()[-2:] == [
        "MLflow run: http://mlflow.example/#/experiments/1/runs/r1?workflowType=machine_learning",
        "MLflow experiment: http://mlflow.example/#/experiments/1?workflowType=machine_learning",
    ]


# -------------------------------------------------------------------------------- errors
def test_no_server_says_to_set_pcd_api_url(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("PCD_API_URL", url)
    line = one_error_line(invoke("study", "list"), 1)
    assert line.startswith(f"error: cannot reach {url}")
    assert "set PCD_API_URL to the API's address" in line


def test_a_method_option_at_the_top_level_points_to_space(store: Store) -> None:
    for command in (["run"], ["submit", "--validate-only"]):
        result = invoke("study", *command, "pcd-digits", "--set", "temperature=4")
        line = one_error_line(result, 2)
        assert "temperature" in line and "did you mean space.temperature?" in line


def test_a_bound_error_reports_the_value_typed(store: Store) -> None:
    for command in (["run"], ["submit", "--validate-only"]):
        result = invoke("study", *command, "pcd-digits", "--set", "space.stages.high=99")
        line = one_error_line(result, 2)
        assert "space.stages" in line and "99" in line and "65" not in line
