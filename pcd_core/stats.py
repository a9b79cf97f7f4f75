"""Paired comparisons over seeds: the difference between two methods' results, seed by seed
(runs of one seed share the data split, batch order and initialisation seed: common random
numbers), with its 95 % confidence interval and a verdict. One owner for the report, the
comparison studies and the promotion."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pcd_core.compare import mean_std


def t95(df: int) -> float:
    """The two-sided 95 % quantile of Student's t with ``df`` degrees of freedom."""
    from scipy.stats import t  # scipy comes with scikit-learn

    return float(t.ppf(0.975, df))


@dataclass(frozen=True)
class PairedDifference:
    """``a - b`` seed by seed: mean, sample std, the 95 % CI half-width (NaN for one seed or
    for differences without spread), the seeds on which ``a`` is ahead, and how many."""

    mean: float
    std: float
    ci95: float
    wins: int
    n: int

    @property
    def clear(self) -> bool:
        """Whether the 95 % interval excludes zero."""
        return not math.isnan(self.ci95) and abs(self.mean) > self.ci95

    def verdict(self, a: str, b: str) -> str:
        """``a better``, ``b better`` or ``no clear difference``."""
        if not self.clear:
            return "no clear difference"
        return f"{a} better" if self.mean > 0 else f"{b} better"

    def describe(self, a: str, b: str) -> str:
        """One line: the difference, its interval, the wins and the verdict."""
        interval = (
            "no interval: one seed, or the same difference on every seed"
            if math.isnan(self.ci95)
            else f"± {self.ci95:.2f} points (95% CI of the paired difference, n={self.n})"
        )
        return (
            f"{a} − {b}: {self.mean:+.2f} {interval}; {a} ahead on {self.wins} of {self.n} "
            f"seeds → {self.verdict(a, b)}"
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def paired_difference(a: Sequence[float], b: Sequence[float]) -> PairedDifference:
    """The paired difference ``a - b`` over seeds (``a[i]`` and ``b[i]`` share seed i)."""
    if len(a) != len(b) or not a:
        raise ValueError(
            f"paired results need the same, non-zero number of seeds: {len(a)}, {len(b)}"
        )
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    n = len(diffs)
    mean, sd = mean_std(diffs)
    # no spread (identical differences on every seed, up to rounding): the t interval is
    # degenerate, not evidence; such a difference gets no interval and no verdict
    spread = n > 1 and sd > 1e-9 * max(1.0, abs(mean))
    half = t95(n - 1) * sd / math.sqrt(n) if spread else float("nan")
    return PairedDifference(mean, sd, half, sum(d > 0 for d in diffs), n)
