"""A trial's value and the ranking of trials, by the objective's direction (service.ranking)."""

from __future__ import annotations

import math

from service.ranking import (
    at_best_epoch,
    at_best_epoch_key,
    best_index,
    best_value,
    ranked,
    running_best,
)


def test_a_trials_value_is_its_best_epoch_by_the_mode() -> None:
    losses = [0.9, 0.3, 0.5]
    assert best_value(losses, "min") == 0.3
    assert best_value(losses, "max") == 0.9
    assert best_index([1.0, 2.0, 2.0], "max") == 1  # the first of equal ones
    assert best_value([], "min") is None
    assert best_value([None, math.nan], "max") is None


def test_best_so_far_follows_the_mode() -> None:
    """The study's "best so far" plot took max whatever the objective."""
    assert running_best([0.9, 0.3, 0.5, 0.2], "min") == [0.9, 0.3, 0.3, 0.2]
    assert running_best([50.0, 70.0, 60.0], "max") == [50.0, 70.0, 70.0]


def test_ranking_keeps_a_best_of_zero_and_puts_missing_values_last() -> None:
    """The leaderboard read a best of 0.0 as missing (``r.best or 1e9``): a loss of 0.0 was
    ranked last instead of first."""
    rows = [("a", 0.5), ("b", None), ("c", 0.0), ("d", 0.7)]
    assert [r[0] for r in ranked(rows, lambda r: r[1], "min")] == ["c", "a", "d", "b"]
    assert [r[0] for r in ranked(rows, lambda r: r[1], "max")] == ["d", "a", "c", "b"]


def test_the_objectives_are_taken_at_the_primary_objectives_best_epoch() -> None:
    history = [
        {"val_loss": 0.8, "student_params": 10.0},
        {"val_loss": 0.2, "student_params": 10.0},
        {"val_loss": 0.4, "student_params": 10.0},
    ]
    assert at_best_epoch(history, ["val_loss", "student_params"], "min") == {
        at_best_epoch_key("val_loss"): 0.2,
        at_best_epoch_key("student_params"): 10.0,
    }
    assert at_best_epoch([], ["val_loss"], "min") == {}
