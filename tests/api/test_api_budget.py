"""PATCH /v1/studies/{id}: a queued or running study's trial budget changes, reaches the
study folder (budget.json, what the driver re-reads) and shows in the study's progress; bad
values are 422 naming the field, a study whose budget cannot change 409, unknown 404. And
the study's limits and stop reason in GET."""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

from service.store import Store, StudyStatus
from service.study_files import (
    EXPERIMENT,
    StopReason,
    StudyFolder,
    StudyState,
    Tags,
    local_artifacts_uri,
)

from .conftest import RO, RW
from .test_api_basics import _problem
from .test_api_openapi import check_declared

SPEC = {"budget": {"trials": 4, "max_failed_trials": 3}, "objective": {"goal": 90.0}}


def _running(store: Store, studies_dir: Path, spec: dict = SPEC) -> tuple[str, StudyFolder]:
    record, _ = store.create("s", spec)
    folder = StudyFolder(studies_dir / record.id)
    folder.path.mkdir(parents=True)
    store.transition(record.id, StudyStatus.running, driver="pid:1", study_dir=str(folder.path))
    return record.id, folder


def _with_trial_runs(folder: StudyFolder, started: int) -> None:
    """The study's own MLflow store with a parent run and ``started`` trial runs."""
    client = MlflowClient(folder.mlflow_uri)
    experiment_id = client.create_experiment(
        EXPERIMENT, artifact_location=local_artifacts_uri(folder.path.parent)
    )
    parent = client.create_run(experiment_id).info.run_id
    for i in range(started):
        tags = {Tags.PARENT_RUN: parent, Tags.TRIAL_ID: f"t{i}"}
        client.create_run(experiment_id, tags=tags)
    folder.write_state(StudyState(parent_run_id=parent, experiment_id=experiment_id))


def _patch(client, study_id: str, body, headers=RW):
    return client.patch(f"/v1/studies/{study_id}", json=body, headers=headers)


def test_a_running_study_gets_its_new_budget_in_its_folder(inproc, app_settings) -> None:
    store = inproc.app.state.store
    study_id, folder = _running(store, app_settings.studies_dir)
    shown = inproc.get(f"/v1/studies/{study_id}", headers=RO).json()
    assert shown["limits"] == {"trials": 4, "goal": 90.0, "max_failed_trials": 3}
    assert shown["trials"]["pending"] == 4 and shown["stop_reason"] is None

    answer = _patch(inproc, study_id, {"budget": {"trials": 40}})
    assert answer.status_code == 200, answer.text
    assert answer.json()["limits"]["trials"] == 40 and answer.json()["trials"]["pending"] == 40
    budget = folder.read_budget()
    assert budget is not None and budget.trials == 40
    assert store.get(study_id).trial_budget == 40
    again = inproc.get(f"/v1/studies/{study_id}", headers=RO).json()
    assert again["limits"]["trials"] == 40 and again["trials"]["pending"] == 40
    # lowered again, still within what started (none)
    assert _patch(inproc, study_id, {"budget": {"trials": 2}}).status_code == 200
    assert folder.read_budget().trials == 2


def test_a_queued_study_keeps_its_budget_in_the_store(inproc) -> None:
    record, _ = inproc.app.state.store.create("s", SPEC)
    answer = _patch(inproc, record.id, {"budget": {"trials": 6}})
    assert answer.status_code == 200, answer.text
    assert inproc.app.state.store.get(record.id).budget_trials == 6  # launched with it


def test_bad_budgets_are_422_naming_the_field(inproc, app_settings) -> None:
    study_id, _ = _running(inproc.app.state.store, app_settings.studies_dir)
    cases = [
        ({"budget": {"trials": 0}}, "budget.trials: "),
        ({"budget": {"trials": -3}}, "budget.trials: "),
        ({"budget": {"trials": "many"}}, "budget.trials: "),
        ({"budget": {"trials": 513}}, "budget.trials: at most 512 on this service"),
        ({"budget": {"trials": 10**6}}, "budget.trials: "),
        ({"budget": {"trials": 5, "max_epochs": 3}}, "budget.max_epochs: "),
        ({"budget": {"trials": 5}, "name": "x"}, "name: "),
        ({"budget": {}}, "budget.trials: "),
        ({}, "budget: "),
        ([1], "nput should be"),
    ]
    for body, detail in cases:
        _problem(_patch(inproc, study_id, body), 422, detail)
    not_json = inproc.patch(
        f"/v1/studies/{study_id}",
        content=b"{budget",
        headers={"content-type": "application/json", **RW},
    )
    _problem(not_json, 422, "body: not valid JSON")


def test_a_budget_below_the_trials_started_is_422(inproc, app_settings) -> None:
    study_id, folder = _running(inproc.app.state.store, app_settings.studies_dir)
    _with_trial_runs(folder, started=3)
    _problem(
        _patch(inproc, study_id, {"budget": {"trials": 2}}),
        422,
        "budget.trials: 2 is fewer than the 3 trials already started",
    )
    answer = _patch(inproc, study_id, {"budget": {"trials": 3}})
    assert answer.status_code == 200 and answer.json()["trials"]["running"] == 3
    assert answer.json()["trials"]["pending"] == 0


def test_finished_fixed_and_unknown_studies(inproc, app_settings) -> None:
    store = inproc.app.state.store
    for status in (StudyStatus.succeeded, StudyStatus.failed, StudyStatus.cancelled):
        study_id, folder = _running(store, app_settings.studies_dir)
        store.transition(study_id, status)
        _problem(_patch(inproc, study_id, {"budget": {"trials": 9}}), 409, f"a {status} study")
        assert folder.read_budget() is None and store.get(study_id).budget_trials is None
    fixed, _ = _running(store, app_settings.studies_dir, {"budget": {"trials": 0}})
    _problem(_patch(inproc, fixed, {"budget": {"trials": 2}}), 409, "fixed-configuration")
    _problem(_patch(inproc, "nope", {"budget": {"trials": 2}}), 404, "no study 'nope'")
    _problem(_patch(inproc, fixed, {"budget": {"trials": 2}}, headers=RO), 403, "")
    assert _patch(inproc, fixed, {"budget": {"trials": 2}}, headers={}).status_code == 401


def test_the_stop_reason_is_shown(inproc, app_settings) -> None:
    study_id, folder = _running(inproc.app.state.store, app_settings.studies_dir)
    detail = "goal reached by trial t1: val_top1 91 >= 90"
    folder.write_stop(StopReason(kind="goal", trial_id="t1", detail=detail))
    assert inproc.get(f"/v1/studies/{study_id}", headers=RO).json()["stop_reason"] == detail


def test_the_patch_is_documented_and_answers_as_declared(inproc, app_settings) -> None:
    document = inproc.get("/openapi.json").json()
    operation = document["paths"]["/v1/studies/{study_id}"]["patch"]
    body = operation["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/StudyUpdate"}
    assert {"200", "403", "404", "409", "422"} <= set(operation["responses"])
    schemas = document["components"]["schemas"]
    assert schemas["StudyUpdate"]["additionalProperties"] is False

    study_id, _ = _running(inproc.app.state.store, app_settings.studies_dir)
    path = "/v1/studies/{study_id}"
    answers = [
        _patch(inproc, study_id, body["example"]),
        _patch(inproc, study_id, {"budget": {"trials": 0}}),
        _patch(inproc, "nope", body["example"]),
    ]
    inproc.app.state.store.transition(study_id, StudyStatus.cancelled)
    answers.append(_patch(inproc, study_id, body["example"]))
    assert [a.status_code for a in answers] == [200, 422, 404, 409]
    for answer in answers:
        check_declared(document, "PATCH", path, answer)
