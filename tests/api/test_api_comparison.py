"""A comparison study is a study spec with a comparison section: the API validates it (422
naming the field) and shows a study's kind."""

from __future__ import annotations

import time

import pytest

from .conftest import RW
from .test_api_basics import _problem

BODY = {
    "name": "cmp",
    "teacher": {"arch": "cnn_small", "epochs": 1},
    "student": "mlp_32",
    "budget": {"trials": 2, "max_epochs": 2},
    "comparison": {"entries": ["ce", "kd", "pcd"], "seeds": 2},
}


def _post(client, body: dict, validate_only: bool = True):
    params = {"validate_only": "true"} if validate_only else {}
    return client.post("/v1/studies", params=params, json=body, headers=RW)


@pytest.mark.parametrize(
    "comparison,message",
    [
        ({"entries": ["ce", "nope"]}, "entries[1].method: unknown method 'nope'"),
        ({"entries": ["ce", "kd"], "reference": "pcd"}, "reference: 'pcd' is not an entry"),
        (
            {"entries": ["ce", {"name": "x", "method": "pcd", "tuned_from": "y"}]},
            "entries[1].tuned_from: 'y' is not an entry",
        ),
    ],
)
def test_bad_comparisons_are_422_naming_the_field(inproc, comparison, message) -> None:
    _problem(_post(inproc, {**BODY, "comparison": comparison}), 422, message)


def test_a_space_beside_a_comparison_is_422(inproc) -> None:
    body = {**BODY, "space": {"temperature": {"type": "fixed", "value": 2.0}}}
    _problem(_post(inproc, body), 422, "space: a comparison tunes each entry's own space")


def test_a_comparison_validates_and_is_shown_as_one(inproc) -> None:
    assert _post(inproc, BODY).status_code == 200, _post(inproc, BODY).text
    created = _post(inproc, BODY, validate_only=False)
    assert created.status_code in (201, 202), created.text
    study = inproc.get(created.headers["location"], headers=RW).json()
    assert study["kind"] == "comparison" and study["comparison"] is None  # not finished
    assert study["trials"]["pending"] == 2 * 2  # kd's and pcd's searches; ce has none


def test_a_comparisons_budget_cannot_change(inproc) -> None:
    created = _post(inproc, BODY, validate_only=False)
    assert created.status_code in (201, 202), created.text
    patch = inproc.patch(created.headers["location"], json={"budget": {"trials": 5}}, headers=RW)
    _problem(patch, 409, "a comparison's budget cannot change")


def test_a_comparison_runs_through_the_service(api) -> None:
    """Submitted over REST, run by the supervisor's driver, shown with its results."""
    body = {
        **BODY,
        "budget": {"trials": 2, "max_epochs": 1},
        "scheduler": {"type": "none"},
        "comparison": {"entries": ["ce", "kd"], "seeds": 2, "reference": "kd"},
    }
    with api.client(headers=RW) as c:
        created = c.post("/v1/studies", json=body)
        assert created.status_code == 201, created.text
        study_id = created.json()["id"]
        deadline = time.monotonic() + 240
        while (done := c.get(f"/v1/studies/{study_id}").json())["status"] not in (
            "succeeded",
            "failed",
        ) and time.monotonic() < deadline:
            time.sleep(1)
        trials = c.get(f"/v1/studies/{study_id}/trials").json()
    assert done["status"] == "succeeded", done
    items = trials["items"] if isinstance(trials, dict) else trials
    assert [t["entry"] for t in items] == ["kd", "kd"] and "temperature" in items[0]["config"]
    assert done["kind"] == "comparison" and done["trials"]["completed"] == 2  # kd's search
    result = done["comparison"]
    assert result["reference"] == "kd" and [e["name"] for e in result["entries"]] == ["ce", "kd"]
    ce = result["entries"][0]
    assert ce["tuning"] == "nothing to tune" and len(ce["test_top1_best_val"]) == 2
    assert ce["vs_reference"]["n"] == 2 and ce["vs_reference"]["verdict"]


def test_a_preset_is_stored_as_its_entries(inproc) -> None:
    """`comparison: {preset: pcd-ablation}` over REST: the study holds the entries it ran
    (its spec reads the same later, whatever the shipped file becomes); digits has the five
    classes S=5 needs, a bad preset is a 422 naming the field."""
    body = {**BODY, "comparison": {"preset": "pcd-ablation", "seeds": 2}}
    validated = _post(inproc, body)
    assert validated.status_code == 200, validated.text
    comparison = validated.json()["spec"]["comparison"]
    entries = comparison["entries"]
    assert [e["name"] for e in entries][:2] == ["pcd", "pcd S=1"] and len(entries) == 9
    assert "preset" not in comparison and comparison["reference"] == "pcd"
    created = _post(inproc, body, validate_only=False)
    assert created.status_code in (201, 202), created.text
    study = inproc.get(created.headers["location"], headers=RW).json()
    assert study["trials"]["pending"] == 2 * 2  # pcd's and kd ce_weight=1's searches
    bad = {**BODY, "comparison": {"preset": "nope"}}
    _problem(_post(inproc, bad), 422, "comparison: preset: unknown preset 'nope'")
