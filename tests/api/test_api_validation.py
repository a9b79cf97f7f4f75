"""Validating a spec costs what its text costs: ranges are never enumerated, validation runs
off the event loop (health checks answer meanwhile) and within a time limit."""

from __future__ import annotations

import asyncio
import threading

import pytest
from pcd_testing.app import app_without_drivers

from search_spaces import SPEC_DIR
from search_spaces.schema import FloatParam, IntParam
from service.api import validation

from .conftest import RW, asgi_client
from .test_api_basics import SMALL, _problem

HUGE = 10**12


@pytest.fixture
def no_enumeration(monkeypatch):
    """Fail any code path that would list the values of a range."""

    def boom(self):
        raise AssertionError(f"enumerated a range of {self.count()} values")

    monkeypatch.setattr(IntParam, "values", boom)
    monkeypatch.setattr(FloatParam, "values", boom)


def _validate(client, overrides: dict):
    body = {**SMALL, "overrides": {**SMALL["overrides"], **overrides}}
    return client.post("/v1/studies", params={"validate_only": "true"}, json=body, headers=RW)


def test_the_reported_range_is_refused_at_once_naming_the_field(inproc, no_enumeration) -> None:
    # 10^7 warm-up epochs: refused by its ends (longer than the run), never enumerated
    warmup = {"type": "int", "low": 0, "high": 10_000_000}
    _problem(
        _validate(inproc, {"space.warmup": warmup}),
        422,
        "space.warmup: 1e+07 warm-up epochs exceed the run",
    )


FINE = {"type": "float", "low": 1.0, "high": 8.0, "step": 1e-9}  # 7e9 + 1 values


def test_huge_ranges_and_conditions_on_them_validate(inproc, no_enumeration) -> None:
    overrides = {
        "space.temperature": FINE,
        "space.split_ratio": {
            "type": "float",
            "low": 0.5,
            "high": 4.0,
            "when": {"temperature": 1.0},
        },
    }
    response = _validate(inproc, overrides)
    assert response.status_code == 200, response.text
    _problem(
        _validate(
            inproc,
            {
                **overrides,
                "space.split_ratio": {
                    **overrides["space.split_ratio"],
                    "when": {"temperature": -1},
                },
            },
        ),
        422,
        "space.split_ratio.when: temperature=-1 is not one of its values",
    )


def test_an_absurd_grid_is_refused_naming_the_space(inproc) -> None:
    overrides = {"sampler.type": "grid", "space": {"temperature": FINE}}
    _problem(_validate(inproc, overrides), 422, "space: a grid of 7000000001 configurations")
    small = {**overrides, "space": {"temperature": {**FINE, "step": 1.0}}}
    assert _validate(inproc, small).status_code == 200


def test_an_out_of_bounds_end_is_still_refused(inproc, no_enumeration) -> None:
    _problem(
        _validate(inproc, {"space.stages": {"type": "int", "low": 1, "high": HUGE}}),
        422,
        "space.stages: value 1000000000000 is not allowed",
    )


def test_errors_do_not_reveal_server_paths(inproc) -> None:
    response = _validate(inproc, {"budget.trials": -1})
    _problem(response, 422, "pcd-digits: budget.trials")
    assert str(SPEC_DIR) not in response.text


def _blocking_validation(monkeypatch) -> tuple[threading.Event, threading.Event]:
    started, release = threading.Event(), threading.Event()
    real = validation.SpecValidator.validate

    def slow(self, raw):
        started.set()
        release.wait(30)
        return real(self, raw)

    monkeypatch.setattr(validation.SpecValidator, "validate", slow)
    return started, release


def test_health_answers_while_a_spec_is_validated(app_settings, monkeypatch) -> None:
    started, release = _blocking_validation(monkeypatch)

    async def go():
        async with asgi_client(app_without_drivers(app_settings)) as client:
            submit = asyncio.create_task(
                client.post("/v1/studies", params={"validate_only": "true"}, json=SMALL, headers=RW)
            )
            while not started.is_set():
                await asyncio.sleep(0.01)
            health = await client.get("/healthz")
            still_validating = not submit.done()
            release.set()
            return health, still_validating, await submit

    health, still_validating, submitted = asyncio.run(go())
    assert health.status_code == 200 and still_validating
    assert submitted.status_code == 200, submitted.text


def test_a_validation_past_the_time_limit_is_503(app_settings, monkeypatch) -> None:
    _, release = _blocking_validation(monkeypatch)
    monkeypatch.setattr(validation, "TIME_LIMIT_S", 0.2)

    async def go():
        async with asgi_client(app_without_drivers(app_settings)) as client:
            return await client.post(
                "/v1/studies", params={"validate_only": "true"}, json=SMALL, headers=RW
            )

    try:
        response = asyncio.run(go())
    finally:
        release.set()
    _problem(response, 503, "could not be validated")
    assert response.headers["retry-after"] == "5"


def test_data_options_are_part_of_the_body(inproc) -> None:
    """data.augment / data.image_size of the spec: validated with the field named, and kept."""
    _problem(_validate(inproc, {"data.augment": "rotate"}), 422, "data.augment")
    _problem(_validate(inproc, {"data.image_size": 28}), 422, "image_folder data only")
    ok = _validate(inproc, {"data.augment": "crop"})
    assert ok.status_code == 200, ok.text
    assert ok.json()["spec"]["data"]["augment"] == "crop"
