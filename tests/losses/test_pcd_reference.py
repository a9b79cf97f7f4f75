"""The vectorised pcd_loss against the naive float64 loop implementation of the spec."""

from __future__ import annotations

import itertools

import pytest
import torch

from pcd_core.losses import WEIGHTINGS, JointSchedule, pcd_loss
from pcd_core.testing.reference import ref_pcd_loss

SPLITS = [("even", 2.0), ("geometric", 2.0), ("geometric", 0.5)]


def _logits(batch: int, classes: int, seed: int, scale: float = 3.0):
    gen = torch.Generator().manual_seed(seed)
    s = torch.randn(batch, classes, generator=gen, dtype=torch.float64) * scale
    t = torch.randn(batch, classes, generator=gen, dtype=torch.float64) * scale
    return s, t


@pytest.mark.parametrize("num_classes", [2, 3, 10, 100, 1000])
@pytest.mark.parametrize("stages", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("ranking", ["abs_gap", "teacher", "none"])
def test_matches_reference(num_classes: int, stages: int, ranking: str) -> None:
    counts = JointSchedule(stages).group_counts(1)
    batch = 3 if num_classes >= 100 else 4
    s, t = _logits(batch, num_classes, seed=num_classes * 10 + stages)
    if stages > num_classes:
        with pytest.raises(ValueError, match=f"k={stages}.*C={num_classes}"):
            pcd_loss(s, t, temperature=4.0, group_counts=counts, ranking=ranking)
        return
    for (split, ratio), weighting, standardize in itertools.product(
        SPLITS, WEIGHTINGS, [False, True]
    ):
        kwargs = dict(
            temperature=4.0 if not standardize else 2.0,
            group_counts=counts,
            ranking=ranking,
            split=split,
            split_ratio=ratio,
            weighting=weighting,
            standardize=standardize,
        )
        got = pcd_loss(s, t, **kwargs)
        want = ref_pcd_loss(s, t, **kwargs)
        assert got.dtype == torch.float64
        torch.testing.assert_close(
            got, want, rtol=1e-6, atol=1e-9, msg=lambda m, kw=kwargs: f"{kw}: {m}"
        )


@pytest.mark.parametrize("counts", [[2], [4, 1, 3], [3, 3, 2], [5, 4, 3, 2, 1, 1, 2, 3, 4, 5]])
@pytest.mark.parametrize("stage_norm", [False, True])
@pytest.mark.parametrize("detach_weight", [False, True])
def test_matches_reference_other_stage_lists(counts, stage_norm, detach_weight) -> None:
    s, t = _logits(5, 17, seed=7)
    kwargs = dict(
        temperature=3.0, group_counts=counts, stage_norm=stage_norm, detach_weight=detach_weight
    )
    torch.testing.assert_close(
        pcd_loss(s, t, **kwargs), ref_pcd_loss(s, t, **kwargs), rtol=1e-6, atol=1e-9
    )


@pytest.mark.parametrize("weighting", WEIGHTINGS)
@pytest.mark.parametrize("detach_weight", [False, True])
@pytest.mark.parametrize("standardize", [False, True])
@pytest.mark.parametrize("split", ["even", "geometric"])
def test_gradients_match_reference(weighting, detach_weight, standardize, split) -> None:
    s, t = _logits(3, 9, seed=11)
    kwargs = dict(
        temperature=2.5,
        group_counts=[4, 2, 1, 1, 2, 4],
        weighting=weighting,
        detach_weight=detach_weight,
        standardize=standardize,
        split=split,
    )
    s1 = s.clone().requires_grad_(True)
    s2 = s.clone().requires_grad_(True)
    pcd_loss(s1, t, **kwargs).backward()
    ref_pcd_loss(s2, t, **kwargs).backward()
    torch.testing.assert_close(s1.grad, s2.grad, rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("weighting", WEIGHTINGS)
@pytest.mark.parametrize("ranking", ["abs_gap", "teacher", "none"])
@pytest.mark.parametrize("standardize", [False, True])
def test_gradcheck(weighting: str, ranking: str, standardize: bool) -> None:
    s, t = _logits(2, 7, seed=3)
    s.requires_grad_(True)

    def fn(student):
        return pcd_loss(
            student,
            t,
            temperature=2.0,
            group_counts=[3, 2, 1],
            weighting=weighting,
            ranking=ranking,
            standardize=standardize,
        )

    assert torch.autograd.gradcheck(fn, (s,), eps=1e-6, atol=1e-6)


def test_float32_inputs_close_to_float64_reference() -> None:
    s, t = _logits(8, 100, seed=5)
    got = pcd_loss(s.float(), t.float(), temperature=4.0, group_counts=[3, 2, 1, 1, 2, 3])
    assert got.dtype == torch.float32
    want = ref_pcd_loss(s, t, temperature=4.0, group_counts=[3, 2, 1, 1, 2, 3])
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-6)
