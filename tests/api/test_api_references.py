"""What a spec refers to is checked when it is submitted (422 naming the field, no server
path): the data set, the teacher checkpoint, classes enough for the method, 32-bit seeds;
request errors read "field: message"; server paths never appear in a study's error."""

from __future__ import annotations

import os
import subprocess

import pytest
from PIL import Image

from .conftest import RW, VENV_BIN
from .test_api_basics import SMALL, _problem

DIGITS_STAGES = {"space.stages": {"type": "int", "low": 1, "high": 11}}


def _validate(client, overrides: dict):
    body = {**SMALL, "overrides": {**SMALL["overrides"], **overrides}}
    return client.post("/v1/studies", params={"validate_only": "true"}, json=body, headers=RW)


def _image_folder(root, classes: int) -> None:
    for split in ("train", "test"):
        for c in range(classes):
            (root / split / f"c{c}").mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(root / split / f"c{c}" / "0.png")


@pytest.mark.parametrize(
    "overrides, field, message",
    [
        ({"data.name": "cifar100"}, "data.name", "CIFAR-100 not found"),
        ({"data.name": "mnist"}, "data.name", "mnist IDX file train-images"),
        ({"data": {"name": "image_folder", "root": "nope"}}, "data.root", "has no train/"),
        ({"data": {"name": "image_folder"}}, "data.name", "image_folder needs a root"),
        ({"teacher": {"checkpoint": "gone.pt"}}, "teacher.checkpoint", "no teacher 'gone.pt'"),
        (DIGITS_STAGES, "space.stages", "11 stages need at least as many classes"),
        ({"space.stages": {"type": "fixed", "value": 11}}, "space", "11 stages"),
        ({"seed": 2**40}, "seed", "less than or equal to 4294967295"),
        ({"data.seed": 2**32}, "data.seed", "less than or equal to 4294967295"),
        ({"training.seed": 2**33}, "training.seed", "less than or equal to 4294967295"),
    ],
)
def test_what_can_only_fail_at_run_time_is_refused_at_submit(
    inproc, app_settings, overrides, field, message
) -> None:
    response = _validate(inproc, overrides)
    _problem(response, 422, message)
    detail = response.json()["detail"]
    assert field in detail.split(": ")[:2] or detail.startswith(f"{field}:"), detail
    assert str(app_settings.data_root) not in detail and "/" not in detail.split(":")[0]
    assert str(app_settings.teacher_root) not in detail


def test_references_that_exist_are_accepted(inproc, app_settings) -> None:
    _image_folder(app_settings.data_root / "two", classes=2)
    app_settings.teacher_root.mkdir(parents=True)
    (app_settings.teacher_root / "t.pt").write_bytes(b"checked by the driver")
    two_stages = {"stages": {"type": "fixed", "value": 2}}
    folder = {"data": {"name": "image_folder", "root": "two"}, "space": two_stages}
    assert _validate(inproc, folder).status_code == 200
    assert _validate(inproc, {"teacher": {"checkpoint": "t.pt"}}).status_code == 200
    stages = {**folder, "space": {"stages": {"type": "int", "low": 1, "high": 3}}}
    _problem(_validate(inproc, stages), 422, "space.stages: pcd option 'stages': 3 stages")
    dkd = {**folder, "promotion.baselines": ["dkd"]}
    _problem(_validate(inproc, dkd), 422, "promotion.baselines: dkd needs at least 3 classes")


@pytest.mark.parametrize(
    "body, message",
    [
        ({"search_space": "pcd-digits", "overrides": [1]}, "overrides: Input should be a valid"),
        ({"search_space": 3}, "search_space: Input should be a valid string"),
        ({"search_space": "pcd-digits", "extra": 1}, "extra: Extra inputs are not permitted"),
    ],
)
def test_request_errors_name_the_field_not_the_model(inproc, body, message) -> None:
    response = inproc.post("/v1/studies", params={"validate_only": "true"}, json=body, headers=RW)
    _problem(response, 422, message)
    assert "NamedSpaceRequest" not in response.text and "validation error" not in response.text


def test_a_study_error_shows_no_server_path(inproc, app_settings) -> None:
    from service.store import StudyStatus

    store = inproc.app.state.store
    study_id = inproc.post("/v1/studies", json=SMALL, headers=RW).json()["id"]
    folder = app_settings.studies_dir.resolve() / study_id
    store.transition(study_id, StudyStatus.running, driver="pid:1")
    error = f"StudyError: {folder} holds a study with another spec (in {VENV_BIN}/pcd)"
    store.transition(study_id, StudyStatus.failed, error=error)
    shown = inproc.get(f"/v1/studies/{study_id}", headers=RW).json()["error"]
    assert (
        shown
        == f"StudyError: <studies>/{study_id} holds a study with another spec (in <python>/bin/pcd)"
    )


def test_serve_with_an_unreachable_database_is_one_line(tmp_path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PCD_")},
        "PCD_DATABASE_URL": "postgresql+psycopg://postgres:s3cret@127.0.0.1:1/test",
        "PCD_API_TOKENS": "t:rw",
    }
    proc = subprocess.run(
        [str(VENV_BIN / "pcd"), "serve", "--port", "1"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "PCD_DATABASE_URL" in lines[0] and "host 127.0.0.1" in lines[0]
    assert "s3cret" not in proc.stderr and "postgres:" not in proc.stderr
