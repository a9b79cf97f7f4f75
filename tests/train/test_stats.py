"""Paired differences over seeds (pcd_core.stats): checked against a hand computation and
scipy's paired t-test, whose p < 0.05 must agree with the interval excluding zero."""

from __future__ import annotations

import math

import pytest
from scipy.stats import ttest_rel

from pcd_core.stats import paired_difference


def test_paired_difference_by_hand() -> None:
    d = paired_difference([91.0, 92.0, 93.0], [90.0, 90.5, 91.0])  # diffs 1.0, 1.5, 2.0
    assert d.mean == pytest.approx(1.5)
    assert d.std == pytest.approx(0.5)
    assert d.ci95 == pytest.approx(4.302653 * 0.5 / math.sqrt(3), rel=1e-5)
    assert (d.wins, d.n) == (3, 3)
    assert d.clear and d.verdict("a", "b") == "a better"
    assert "a − b: +1.50 ± 1.24 points" in d.describe("a", "b")


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ([90.1, 91.3, 89.8, 90.6], [89.9, 90.2, 90.1, 90.0]),
        ([80.0, 82.5, 81.0, 79.5, 80.5], [81.0, 83.0, 82.0, 80.5, 81.5]),
        ([70.0, 75.0, 72.0], [71.0, 71.0, 74.0]),
    ],
)
def test_interval_agrees_with_the_paired_t_test(a: list[float], b: list[float]) -> None:
    d = paired_difference(a, b)
    assert d.clear == (ttest_rel(a, b).pvalue < 0.05)


def test_one_seed_has_no_interval_and_no_verdict() -> None:
    d = paired_difference([90.0], [80.0])
    assert math.isnan(d.ci95) and not d.clear
    assert d.verdict("a", "b") == "no clear difference"


def test_unpaired_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="same, non-zero number of seeds"):
        paired_difference([1.0, 2.0], [1.0])


def test_differences_without_spread_get_no_interval() -> None:
    # -4.74 on both seeds, up to float rounding: a degenerate interval is not evidence
    d = paired_difference([90.0, 91.3], [94.74, 96.04])
    assert d.std < 1e-9 and math.isnan(d.ci95) and not d.clear
    assert d.verdict("a", "b") == "no clear difference"
    assert "-4.74 no interval: one seed, or the same difference on every seed" in d.describe(
        "a", "b"
    )
