"""KD, DKD, logit standardisation, the released PCD variant and the schedules."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pcd_core.losses import (
    JointSchedule,
    PhasedSchedule,
    dkd_loss,
    dkd_parts,
    kd_loss,
    released_pcd_loss,
    standardize_logits,
)
from pcd_core.testing.reference import ref_kd_loss, ref_standardize


def _logits(batch=8, classes=10, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return (
        torch.randn(batch, classes, generator=gen, dtype=dtype) * 3,
        torch.randn(batch, classes, generator=gen, dtype=dtype) * 3,
    )


def test_kd_matches_reference_and_torch_kl_div() -> None:
    s, t = _logits(classes=100)
    torch.testing.assert_close(kd_loss(s, t, temperature=4.0), ref_kd_loss(s, t, 4.0))
    torch_kl = F.kl_div(
        F.log_softmax(s / 4, 1), F.log_softmax(t / 4, 1), log_target=True, reduction="batchmean"
    )
    torch.testing.assert_close(kd_loss(s, t, temperature=4.0), torch_kl * 16)
    assert kd_loss(t, t, temperature=4.0).item() == 0.0


def test_standardize_matches_reference_and_shift_scale_invariance() -> None:
    s, _ = _logits()
    torch.testing.assert_close(standardize_logits(s), ref_standardize(s))
    z = standardize_logits(s)
    torch.testing.assert_close(z.mean(1), torch.zeros(8, dtype=torch.float64))
    torch.testing.assert_close(z.std(1), torch.ones(8, dtype=torch.float64), rtol=1e-6, atol=0)
    torch.testing.assert_close(standardize_logits(3 * s + 5), z, rtol=1e-6, atol=1e-7)
    # KD with standardisation ignores the scale and shift of either side's logits
    s2, t2 = _logits(seed=1)
    torch.testing.assert_close(
        kd_loss(s2, t2, temperature=2.0, standardize=True),
        kd_loss(4 * s2 - 1, 0.5 * t2 + 2, temperature=2.0, standardize=True),
        rtol=1e-5,
        atol=1e-7,
    )


def test_dkd_parts_on_hand_checked_logits() -> None:
    target = torch.tensor([0, 0])
    s = torch.zeros(2, 3, dtype=torch.float64)
    t = torch.tensor([[math.log(2), 0, 0], [0, math.log(3), 0]], dtype=torch.float64)
    tckd, nckd = dkd_parts(s, t, target, temperature=1.0)
    # sample 0: p=[.5,.25,.25], q=[1/3]*3 -> binary [.5,.5] vs [1/3,2/3]; non-target equal
    tckd0 = 0.5 * math.log(1.5) + 0.5 * math.log(0.75)
    # sample 1: p=[.2,.6,.2] -> binary [.2,.8] vs [1/3,2/3]; non-target [.75,.25] vs [.5,.5]
    tckd1 = 0.2 * math.log(0.2 * 3) + 0.8 * math.log(0.8 * 1.5)
    nckd1 = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert tckd.item() == pytest.approx((tckd0 + tckd1) / 2, rel=1e-12)
    assert nckd.item() == pytest.approx(nckd1 / 2, rel=1e-12)
    loss = dkd_loss(s, t, target, alpha=1.0, beta=8.0, temperature=1.0)
    assert loss.item() == pytest.approx(tckd.item() + 8 * nckd.item(), rel=1e-12)


def _mdistiller_dkd(s, t, target, alpha, beta, temperature):
    """mdistiller's dkd_loss, transcribed (its -1000 mask is fine for moderate logits)."""
    gt = F.one_hot(target, s.shape[1]).bool()
    ps = F.softmax(s / temperature, dim=1)
    pt = F.softmax(t / temperature, dim=1)

    def cat(p):
        return torch.stack(((p * gt).sum(1), (p * ~gt).sum(1)), dim=1)

    tckd = F.kl_div(torch.log(cat(ps)), cat(pt), reduction="sum") * temperature**2 / s.shape[0]
    pt2 = F.softmax(t / temperature - 1000.0 * gt, dim=1)
    ls2 = F.log_softmax(s / temperature - 1000.0 * gt, dim=1)
    nckd = F.kl_div(ls2, pt2, reduction="sum") * temperature**2 / s.shape[0]
    return alpha * tckd + beta * nckd


def test_dkd_matches_mdistiller_and_is_stable() -> None:
    s, t = _logits(classes=100)
    target = torch.randint(0, 100, (8,), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        dkd_loss(s, t, target, alpha=1.0, beta=8.0, temperature=4.0),
        _mdistiller_dkd(s, t, target, 1.0, 8.0, 4.0),
    )
    big_s = (s * 3000).float().requires_grad_(True)
    loss = dkd_loss(big_s, (t * 3000).float(), target, alpha=1.0, beta=8.0, temperature=4.0)
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(big_s.grad).all()
    assert dkd_loss(t, t, target, alpha=1.0, beta=8.0, temperature=4.0).item() == 0.0


def test_dkd_rejects_two_classes() -> None:
    s, t = _logits(classes=2)
    with pytest.raises(ValueError, match="at least 3 classes"):
        dkd_loss(s, t, torch.zeros(8, dtype=torch.long), alpha=1.0, beta=8.0, temperature=4.0)


def test_released_variant_equals_its_closed_form() -> None:
    s, t = _logits(classes=100)
    for stages, temperature in ((3, 4.0), (5, 2.0)):
        p = F.softmax(t / temperature, 1)
        log_q = F.log_softmax(s / temperature, 1)
        kl = (p * (p.log() - log_q)).sum(1).mean()
        cos = F.cosine_similarity(p, log_q, dim=1)
        want = 2 * stages * temperature**2 * kl * (1 - cos).mean()
        got = released_pcd_loss(s, t, temperature=temperature, stages=stages)
        torch.testing.assert_close(got, want)


def test_joint_schedule_counts() -> None:
    assert JointSchedule(3).group_counts(1) == [3, 2, 1, 1, 2, 3]
    assert JointSchedule(3, "f2c").group_counts(7) == [3, 2, 1]
    assert JointSchedule(3, "c2f").group_counts(7) == [1, 2, 3]
    with pytest.raises(ValueError, match="directions must be one of both, f2c, c2f"):
        JointSchedule(3, "up")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="stages must be a positive integer"):
        JointSchedule(0)


def test_phased_schedule_phases() -> None:
    sched = PhasedSchedule(stages=3, epochs=12)
    assert [sched.group_counts(e)[0] for e in range(1, 13)] == [3, 3, 2, 2, 1, 1, 1, 1, 2, 2, 3, 3]
    f2c = PhasedSchedule(stages=3, epochs=6, directions="f2c")
    assert [f2c.group_counts(e)[0] for e in range(1, 7)] == [3, 3, 2, 2, 1, 1]
    c2f = PhasedSchedule(stages=2, epochs=5, directions="c2f")
    assert [c2f.group_counts(e)[0] for e in range(1, 6)] == [1, 1, 1, 2, 2]
    uneven = PhasedSchedule(stages=2, epochs=10)  # 4 phases over 10 epochs: lengths 3,2,3,2
    assert [uneven.group_counts(e)[0] for e in range(1, 11)] == [2, 2, 2, 1, 1, 1, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="epochs count from 1"):
        sched.group_counts(0)
