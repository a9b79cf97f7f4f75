"""The promotion's lines as `pcd study run`, `pcd study show`, `make demo` and the parent run's
description print them (service/promotion_view.py)."""

from __future__ import annotations

from service.promotion_view import display_name, paired_line, promotion_lines

BEST = {"mean": 98.333, "std": 0.561, "seeds": 3}
KD = {
    "mean": 97.31, "std": 0.16, "seeds": 3, "at_defaults": True,
    "paired_vs_promoted": {
        "mean": 1.023, "std": 0.3, "ci95": 0.797, "wins": 3, "n": 3, "verdict": "promoted better",
    },
}  # fmt: skip


def test_a_baseline_at_defaults_is_labelled_and_paired_with_the_promoted_result() -> None:
    lines = promotion_lines({"best": BEST, "baseline_kd": KD}, "retrained on train+val")
    assert lines == [
        "promoted: test top-1 98.33 ± 0.56 (3 seeds, retrained on train+val)",
        "kd (at defaults): test top-1 97.31 ± 0.16 (3 seeds, retrained on train+val)",
        "promoted − kd (at defaults): +1.02 ± 0.80 points (95% CI, 3 seeds) → promoted better",
        "note: baselines are at their defaults, not tuned; `pcd compare` tunes every method "
        "with the same budget for a fair comparison",
    ]
    assert display_name("baseline_kd", KD) == "kd (at defaults)"  # the demo plot's bar


def test_one_seed_has_no_interval_and_an_old_summary_no_label() -> None:
    one = {**KD, "paired_vs_promoted": {**KD["paired_vs_promoted"], "ci95": None, "n": 1}}
    assert paired_line("baseline_kd", one) == (
        "promoted − kd (at defaults): +1.02 points (1 seed: no interval) → promoted better"
    )
    old = {"mean": 97.31, "std": 0.16, "seeds": 3}  # written before baselines were labelled
    assert promotion_lines({"baseline_kd": old}) == ["kd: test top-1 97.31 ± 0.16 (3 seeds)"]
    assert paired_line("best", BEST) is None
