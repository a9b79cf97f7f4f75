"""Every error is problem+json (unknown routes and methods too); DELETE removes the folder."""

from __future__ import annotations

from service.study_files import StudyFolder

from .conftest import RW
from .test_api_basics import SMALL, _problem


def test_unknown_routes_and_methods_are_problems(inproc) -> None:
    _problem(inproc.get("/v1/nothing-here", headers=RW), 404, "Not Found")
    _problem(inproc.put("/v1/studies", headers=RW), 405, "Method Not Allowed")


def test_delete_removes_the_study_folder(inproc, app_settings) -> None:
    study_id = inproc.post("/v1/studies", json=SMALL, headers=RW).json()["id"]
    folder = app_settings.studies_dir / study_id
    (folder / "trials").mkdir(parents=True)
    StudyFolder(folder).write_spec({})
    assert inproc.post(f"/v1/studies/{study_id}/cancel", headers=RW).status_code == 202
    assert inproc.delete(f"/v1/studies/{study_id}", headers=RW).status_code == 204
    assert not folder.exists() and app_settings.studies_dir.is_dir()
