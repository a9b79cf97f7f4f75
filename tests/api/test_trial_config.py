"""Trial configurations as the API shows them: MLflow keeps params as strings; the API gives
numbers as numbers and booleans as booleans, typed by the study's search space."""

from __future__ import annotations

import pytest

from service.api.read_model import trials as _trials
from service.api.trial_config import literal, typed_config
from service.settings import Settings
from service.study_files import Tags, TrialOutcome

from .test_progress_reads import _study_with_runs

SPACE = {
    "lr": {"type": "float", "low": 0.01, "high": 0.1, "log": True},
    "stages": {"type": "int", "low": 2, "high": 5},
    "split": {"type": "categorical", "choices": ["uniform", "geometric"]},
    "flag": {"type": "categorical", "choices": [True, False]},
    "code": {"type": "categorical", "choices": ["1", 1]},  # text and number spelled alike
    "scale": {"type": "fixed", "value": 1.0},
    "when_off": {"type": "float", "low": 1.0, "high": 2.0},
}


def test_params_are_typed_by_the_search_space() -> None:
    params = {
        "lr": "0.05",
        "stages": "3",
        "split": "geometric",
        "flag": "False",
        "code": "1",
        "scale": "1.0",
        "when_off": "1",  # a float parameter that happened to be logged as an integer
    }
    typed = typed_config(params, SPACE)
    assert typed == {
        "lr": 0.05,
        "stages": 3,
        "split": "geometric",
        "flag": False,
        "code": "1",  # the first choice that MLflow would have written so
        "scale": 1.0,
        "when_off": 1.0,
    }
    assert type(typed["stages"]) is int and type(typed["when_off"]) is float
    assert typed["flag"] is False


@pytest.mark.parametrize(
    "text,value",
    [
        ("3", 3),
        ("-4", -4),
        ("0.25", 0.25),
        ("1e-05", 1e-05),
        ("True", True),
        ("False", False),
        ("None", None),
        ("resnet8", "resnet8"),
        ("007", "007"),  # not how str() writes a number: an identifier, kept
        ("nan", "nan"),
        ("1e999", "1e999"),  # not a finite number
        ("true", "true"),  # not how Python writes a bool
        ("[1, 2]", "[1, 2]"),
        ("", ""),
    ],
)
def test_params_outside_the_space_are_read_literally(text, value) -> None:
    assert literal(text) == value and type(literal(text)) is type(value)


def test_the_trials_route_reads_typed_configs_and_states(tmp_path) -> None:
    done = {Tags.OUTCOME: TrialOutcome.completed}
    stopped = {Tags.OUTCOME: TrialOutcome.stopped_early}
    record = _study_with_runs(
        tmp_path,
        [
            ("t1", "FINISHED", done, {"val_top1": [50.0]}),
            ("t2", "FINISHED", stopped, {"val_top1": [40.0]}),
            ("t3", "RUNNING", {Tags.OUTCOME: "made up by hand"}, {}),
        ],
        spec={"space": SPACE},
        params={
            # (with the study's context, which every trial run carries: not its config)
            "t1": {"lr": 0.05, "stages": 3, "flag": True, "seed": 7, "method": "pcd"},
            "t2": {"lr": 0.01, "stages": 2, "flag": False},
        },
    )
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'store.db'}")
    by_id = {t.trial_id: t for t in _trials(settings, record)}
    assert by_id["t1"].config == {"lr": 0.05, "stages": 3, "flag": True, "seed": 7}
    assert by_id["t2"].config["flag"] is False
    assert [by_id[t].state for t in ("t1", "t2", "t3")] == ["completed", "stopped_early", "running"]
    assert by_id["t3"].outcome is None  # not one of the documented outcomes
    assert by_id["t1"].model_dump(mode="json")["config"]["stages"] == 3
