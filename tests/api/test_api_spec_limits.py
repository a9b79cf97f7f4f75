"""Every number of a spec is typed, bounded and finite; the service's epoch limit holds for
the teacher and the fixed training settings too. Nothing is silently changed."""

from __future__ import annotations

import json

import pytest

from .conftest import RW
from .test_api_basics import SMALL, _problem


def _validate(client, overrides: dict):
    body = {**SMALL, "overrides": {**SMALL["overrides"], **overrides}}
    return client.post("/v1/studies", params={"validate_only": "true"}, json=body, headers=RW)


def _validate_raw(client, text: str):
    headers = {**RW, "content-type": "application/json"}
    return client.post(
        "/v1/studies", params={"validate_only": "true"}, content=text, headers=headers
    )


@pytest.mark.parametrize("field", ["teacher.epochs", "training.epochs", "budget.max_epochs"])
def test_epochs_are_bounded_by_the_service_limit(inproc, field) -> None:
    _problem(_validate(inproc, {field: 100_000}), 422, f"{field}: at most 400 on this service")
    assert _validate(inproc, {field: 2}).status_code == 200


@pytest.mark.parametrize(
    "field,value,rule",
    [
        ("training.lr", -1, "greater than 0"),
        ("training.batch_size", 0, "greater than or equal to 1"),
        ("training.momentum", 5, "less than 1"),
        ("training.weight_decay", -0.1, "greater than or equal to 0"),
        ("training.seed", -3, "greater than or equal to 0"),
        ("training.batch_size", "many", "valid integer"),
        ("teacher.lr", 0, "greater than 0"),
    ],
)
def test_training_settings_are_typed_and_bounded(inproc, field, value, rule) -> None:
    response = _validate(inproc, {field: value})
    _problem(response, 422, field)
    assert rule in response.json()["detail"]


def test_searched_training_options_are_bounded_too(inproc) -> None:
    lr = {"type": "float", "low": -1.0, "high": 0.1}
    _problem(_validate(inproc, {"space.lr": lr}), 422, "space.lr: value -1.0 is not allowed")
    ok = _validate(
        inproc,
        {
            "space.lr": {**lr, "low": 0.001},
            "space.batch_size": {"type": "int", "low": 16, "high": 128},
        },
    )
    assert ok.status_code == 200, ok.text


def test_valid_training_settings_are_kept_as_given(inproc) -> None:
    response = _validate(inproc, {"training.lr": 0.05, "training.epochs": 3})
    assert response.status_code == 200, response.text
    assert response.json()["spec"]["training"] == {"lr": 0.05, "batch_size": 64, "epochs": 3}


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
@pytest.mark.parametrize("field", ["training.lr", "budget.time_limit_s", "space.alpha"])
def test_non_finite_numbers_are_refused_naming_the_field(inproc, literal, field) -> None:
    value = {"type": "fixed", "value": "@"} if field == "space.alpha" else "@"
    overrides = {**SMALL["overrides"], field: value}
    text = json.dumps({**SMALL, "overrides": overrides}).replace('"@"', literal)
    response = _validate_raw(inproc, text)
    _problem(response, 422, field)
    assert "finite" in response.json()["detail"]
