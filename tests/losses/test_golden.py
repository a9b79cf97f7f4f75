"""Committed golden values: a refactor of the losses cannot drift silently."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pcd_core import losses

GOLDEN = json.loads(Path(__file__).with_name("golden_values.json").read_text())


@pytest.mark.parametrize("case", GOLDEN["cases"], ids=lambda c: f"{c['fn']}-{c['kwargs']}")
def test_golden_value(case) -> None:
    s = torch.tensor(GOLDEN["student"], dtype=torch.float64)
    t = torch.tensor(GOLDEN["teacher"], dtype=torch.float64)
    fn = getattr(losses, case["fn"])
    if case["fn"] == "dkd_loss":
        value = fn(s, t, torch.tensor(GOLDEN["target"]), **case["kwargs"])
    else:
        value = fn(s, t, **case["kwargs"])
    assert value.item() == pytest.approx(case["value"], rel=1e-10, abs=1e-12)
    # the fp32 path agrees to fp32 precision
    value32 = fn(s.float(), t.float(), **case["kwargs"]) if case["fn"] != "dkd_loss" else None
    if value32 is not None:
        assert value32.item() == pytest.approx(case["value"], rel=1e-4, abs=1e-6)
