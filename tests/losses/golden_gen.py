"""Regenerate golden_values.json (run only on purpose: `python -m tests.losses.golden_gen`).

Each value is computed by pcd_core and checked against the naive reference before it is
written, so the golden file pins behaviour the spec agrees with.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from pcd_core.losses import dkd_loss, kd_loss, pcd_loss, released_pcd_loss
from pcd_core.testing.reference import ref_kd_loss, ref_pcd_loss

PATH = Path(__file__).with_name("golden_values.json")

PCD_CASES = [
    {"temperature": 4.0, "group_counts": [3, 2, 1, 1, 2, 3]},
    {"temperature": 4.0, "group_counts": [5, 4, 3, 2, 1], "ranking": "teacher"},
    {"temperature": 2.0, "group_counts": [2, 1, 1, 2], "standardize": True},
    {"temperature": 4.0, "group_counts": [3], "split": "geometric", "split_ratio": 2.0},
    {"temperature": 1.5, "group_counts": [4, 2], "weighting": "released", "ranking": "none"},
    {"temperature": 4.0, "group_counts": [3, 2, 1], "weighting": "none", "stage_norm": True},
]


def main() -> None:
    gen = torch.Generator().manual_seed(2025)
    s = (torch.randn(4, 11, generator=gen, dtype=torch.float64) * 3).round(decimals=4)
    t = (torch.randn(4, 11, generator=gen, dtype=torch.float64) * 3).round(decimals=4)
    y = torch.tensor([0, 3, 7, 10])
    cases = []
    for opts in PCD_CASES:
        value = pcd_loss(s, t, **opts).item()
        assert abs(value - ref_pcd_loss(s, t, **opts).item()) < 1e-9
        cases.append({"fn": "pcd_loss", "kwargs": opts, "value": value})
    kd = kd_loss(s, t, temperature=4.0).item()
    assert abs(kd - ref_kd_loss(s, t, 4.0).item()) < 1e-12
    cases.append({"fn": "kd_loss", "kwargs": {"temperature": 4.0}, "value": kd})
    dkd_kwargs = {"alpha": 1.0, "beta": 8.0, "temperature": 4.0}
    cases.append(
        {"fn": "dkd_loss", "kwargs": dkd_kwargs, "value": dkd_loss(s, t, y, **dkd_kwargs).item()}
    )
    rel_kwargs = {"temperature": 4.0, "stages": 3}
    cases.append(
        {
            "fn": "released_pcd_loss",
            "kwargs": rel_kwargs,
            "value": released_pcd_loss(s, t, **rel_kwargs).item(),
        }
    )
    PATH.write_text(
        json.dumps(
            {"student": s.tolist(), "teacher": t.tolist(), "target": y.tolist(), "cases": cases},
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {len(cases)} cases to {PATH}")


if __name__ == "__main__":
    main()
