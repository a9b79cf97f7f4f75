"""A search study's promotion as people read it: one owner of its lines, for the CLI (``pcd
study run``, ``pcd study show``), ``make demo`` and the parent run's description in MLflow.

The promotion's result (StudySummary.promotion, the API's StudyOut.promotion) maps a label
(``best``, ``baseline_<method>``) to its test top-1 over the seeds; a baseline also says that
it ran at its method's defaults (``at_defaults``, its ``options``) and carries
``paired_vs_promoted``: the promoted result minus the baseline's, seed by seed (seed i of both
shares data order and initialisation), with its 95 % interval (pcd_core.stats). Baselines are
not tuned: ``pcd compare`` (comparison studies) tunes every method with the same budget.
Plain data only: the CLI imports this without Ray or MLflow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

PROMOTED = "best"  # the promotion's label of the best configuration
BASELINE_PREFIX = "baseline_"
FAIR_HINT = (
    "baselines are at their defaults, not tuned; `pcd compare` tunes every method with the "
    "same budget for a fair comparison"
)


def display_name(label: str, stats: Mapping[str, Any]) -> str:
    """``best`` as ``promoted``; a baseline as its method, ``kd (at defaults)`` when it ran at
    its defaults."""
    if label == PROMOTED:
        return "promoted"
    name = label.removeprefix(BASELINE_PREFIX)
    return f"{name} (at defaults)" if stats.get("at_defaults") else name


def result_text(stats: Mapping[str, Any], detail: str = "") -> str:
    """``test top-1 97.31 ± 0.16 (2 seeds[, detail])``."""
    extra = f", {detail}" if detail else ""
    return f"test top-1 {stats['mean']:.2f} ± {stats['std']:.2f} ({stats['seeds']} seeds{extra})"


def result_line(label: str, stats: Mapping[str, Any], detail: str = "") -> str:
    """``kd (at defaults): test top-1 97.31 ± 0.16 (2 seeds[, detail])``."""
    return f"{display_name(label, stats)}: {result_text(stats, detail)}"


def paired_line(label: str, stats: Mapping[str, Any]) -> str | None:
    """``promoted − kd (at defaults): +1.02 ± 0.80 points (95% CI, 3 seeds) → promoted
    better``; None for the promoted result, or a baseline without a paired difference."""
    paired = stats.get("paired_vs_promoted")
    if label == PROMOTED or not paired:
        return None
    n = int(paired["n"])
    ci95 = paired.get("ci95")
    if ci95 is None or not math.isfinite(float(ci95)):
        why = "1 seed" if n == 1 else f"the same difference on all {n} seeds"
        spread = f"{paired['mean']:+.2f} points ({why}: no interval)"
    else:
        spread = f"{paired['mean']:+.2f} ± {ci95:.2f} points (95% CI, {n} seeds)"
    return f"promoted − {display_name(label, stats)}: {spread} → {paired['verdict']}"


def promotion_lines(promotion: Mapping[str, Mapping[str, Any]], detail: str = "") -> list[str]:
    """Each result's line, then each baseline's paired difference, then, when a baseline ran
    at its defaults, a line that says so and where a fair comparison is."""
    lines = [result_line(label, stats, detail) for label, stats in promotion.items()]
    lines += [p for label, stats in promotion.items() if (p := paired_line(label, stats))]
    if any(stats.get("at_defaults") for stats in promotion.values()):
        lines.append(f"note: {FAIR_HINT}")
    return lines
