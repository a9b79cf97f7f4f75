"""The fused Triton PCD kernel against the float64 reference, run by Triton's CPU interpreter.

The kernel is written for CUDA; with ``TRITON_INTERPRET=1`` set before triton is imported,
the same kernel runs on CPU tensors, so these tests prove it without a GPU. The interpreter
costs about 0.1 s per row at C=10 and seconds per row at C=1000 (its bitonic sort), hence small
batches here; the wide grid (every C, S and option) runs with ``pytest -m fused_grid``.
"""

from __future__ import annotations

import itertools
import logging
import os
import sys

import pytest
import torch

_TRITON_ALREADY_IMPORTED = "triton" in sys.modules
# Read when triton and the kernels are decorated; it stays set for the session (only triton
# reads it, and only this module imports triton on a CPU machine).
os.environ["TRITON_INTERPRET"] = "1"
pytest.importorskip("triton")

from triton.runtime.interpreter import InterpretedFunction  # noqa: E402

from pcd_core.losses import JointSchedule, fused_pcd, pcd_loss  # noqa: E402
from pcd_core.losses import _fused_pcd_kernels as kernels  # noqa: E402
from pcd_core.losses.fused_pcd import fused_pcd_loss, unsupported_reason  # noqa: E402
from pcd_core.testing.reference import ref_pcd_loss  # noqa: E402

if not isinstance(kernels.fused_pcd_kernel, InterpretedFunction):  # pragma: no cover
    pytest.skip(
        f"triton was imported before TRITON_INTERPRET=1 (already imported: "
        f"{_TRITON_ALREADY_IMPORTED}); run this file on its own",
        allow_module_level=True,
    )

RANKINGS = ["abs_gap", "teacher", "none"]
SPLITS = [("even", 2.0), ("geometric", 2.0), ("geometric", 0.5)]
WEIGHTINGS = ["paper", "none", "released"]


def _logits(batch: int, classes: int, seed: int, scale: float = 3.0):
    gen = torch.Generator().manual_seed(seed)
    s = torch.randn(batch, classes, generator=gen) * scale
    t = torch.randn(batch, classes, generator=gen) * scale
    return s, t


def _fused_and_reference(s: torch.Tensor, t: torch.Tensor, **kwargs):
    """(loss, grad) of the fused kernel on s, t and of the float64 reference on the same
    (already rounded) values."""
    s_fused = s.clone().requires_grad_(True)
    got = fused_pcd_loss(s_fused, t, **kwargs)
    got.backward()
    s_ref = s.double().requires_grad_(True)
    want = ref_pcd_loss(s_ref, t.double(), **kwargs)
    want.backward()
    return got, s_fused.grad, want, s_ref.grad


def assert_matches_reference(s: torch.Tensor, t: torch.Tensor, **kwargs) -> None:
    got, got_grad, want, want_grad = _fused_and_reference(s, t, **kwargs)
    _assert_close_in_fp32(got, got_grad, want, want_grad, kwargs)


def _assert_close_in_fp32(got, got_grad, want, want_grad, kwargs) -> None:
    """The loss to fp32 accuracy; the gradient to that of its dtype (the input's)."""
    assert got.dtype == torch.float32
    msg = lambda m: f"{kwargs}: {m}"  # noqa: E731
    torch.testing.assert_close(got.double(), want, rtol=3e-5, atol=1e-6, msg=msg)
    rtol = max(1e-4, torch.finfo(got_grad.dtype).eps)
    # the floor: a gradient that is 0 exactly (C=2 standardised: the values do not depend on
    # the logits) comes out as fp32 cancellation noise of the gradient before standardisation
    atol = 3e-5 * float(want_grad.abs().max()) + 1e-6
    torch.testing.assert_close(
        got_grad.double(), want_grad.to(got_grad.dtype).double(), rtol=rtol, atol=atol, msg=msg
    )


def _options(ranking: str, split: tuple[str, float], weighting: str, standardize: bool):
    return dict(
        temperature=2.0 if standardize else 4.0,
        ranking=ranking,
        split=split[0],
        split_ratio=split[1],
        weighting=weighting,
        standardize=standardize,
    )


# ----------------------------------------------------------------- the default (fast) part
@pytest.mark.parametrize("num_classes", [2, 3, 10])
def test_every_option_matches_reference(num_classes: int) -> None:
    stages = min(3, num_classes)
    counts = JointSchedule(stages).group_counts(1)
    s, t = _logits(2, num_classes, seed=num_classes)
    combos = itertools.product(RANKINGS, WEIGHTINGS, [False, True])
    for i, (ranking, weighting, standardize) in enumerate(combos):
        split = SPLITS[i % len(SPLITS)]  # every split meets every ranking and weighting
        options = _options(ranking, split, weighting, standardize)
        assert_matches_reference(s, t, group_counts=counts, **options)


@pytest.mark.parametrize("stages", [1, 2, 3, 4, 5, 6])
def test_every_stage_count_matches_reference(stages: int) -> None:
    s, t = _logits(2, 10, seed=stages)
    for weighting in ("paper", "released"):
        counts = JointSchedule(stages).group_counts(1)
        assert_matches_reference(s, t, temperature=4.0, group_counts=counts, weighting=weighting)


@pytest.mark.parametrize("counts", [[2], [4, 1, 3], [3, 3, 2], [5, 4, 3, 2, 1, 1, 2, 3, 4, 5]])
def test_stage_lists_norm_and_detached_weight(counts: list[int]) -> None:
    s, t = _logits(2, 17, seed=7)
    for stage_norm, detach_weight in itertools.product([False, True], [False, True]):
        assert_matches_reference(
            s,
            t,
            temperature=3.0,
            group_counts=counts,
            stage_norm=stage_norm,
            detach_weight=detach_weight,
        )


@pytest.mark.parametrize("ranking", ["abs_gap", "teacher"])
def test_tied_keys_rank_like_a_stable_sort(ranking: str) -> None:
    # small integers: many exactly equal |t - s| and t, in fp32 as in float64
    gen = torch.Generator().manual_seed(1)
    s = torch.randint(-2, 3, (2, 12), generator=gen).float()
    t = torch.randint(-2, 3, (2, 12), generator=gen).float()
    t[0, :6] = 0.0
    t[0, 6:] = -0.0  # -0.0 ties with 0.0
    for split, weighting in zip(SPLITS, WEIGHTINGS, strict=True):
        options = _options(ranking, split, weighting, standardize=False)
        assert_matches_reference(s, t, group_counts=[4, 3, 2, 1], **options)


def test_rows_of_equal_logits() -> None:
    s, t = _logits(3, 9, seed=2)
    s[0] = 1.5  # constant student row
    t[1] = -0.5  # constant teacher row
    s[2], t[2] = 2.0, 2.0  # both constant
    for weighting in WEIGHTINGS:
        assert_matches_reference(s, t, temperature=4.0, group_counts=[3, 2, 1], weighting=weighting)
    # standardised, a constant row's std is 0 and the float64 reference's gradient is NaN there;
    # the kernel takes the vectorised path's limit
    kwargs = dict(temperature=2.0, group_counts=[3, 2, 1], standardize=True)
    s_fused, s_vec = s.clone().requires_grad_(True), s.clone().requires_grad_(True)
    fused = fused_pcd_loss(s_fused, t, **kwargs)
    fused.backward()
    vectorised = pcd_loss(s_vec, t, **kwargs)
    vectorised.backward()
    torch.testing.assert_close(fused, ref_pcd_loss(s, t, **kwargs).float(), rtol=3e-5, atol=1e-6)
    torch.testing.assert_close(fused, vectorised, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(s_fused.grad, s_vec.grad, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("scale", [1e3, 3e4])
def test_large_magnitudes(scale: float) -> None:
    # p log p underflows to 0 * -inf in the naive reference at these scales; the vectorised
    # path in float64 (itself checked against the reference) is the reference here
    s, t = _logits(2, 12, seed=3, scale=scale)
    for weighting, temperature in itertools.product(WEIGHTINGS, [1.0, 4.0]):
        kwargs = dict(temperature=temperature, group_counts=[3, 2, 1, 1, 2, 3], weighting=weighting)
        s_fused, s_ref = s.clone().requires_grad_(True), s.double().requires_grad_(True)
        got, want = fused_pcd_loss(s_fused, t, **kwargs), pcd_loss(s_ref, t.double(), **kwargs)
        (got + want).backward()
        assert torch.isfinite(want) and want > 0
        _assert_close_in_fp32(got, s_fused.grad, want, s_ref.grad, kwargs)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs_are_computed_in_fp32(dtype: torch.dtype) -> None:
    s, t = _logits(2, 20, seed=4)
    s, t = s.to(dtype), t.to(dtype)
    for weighting, standardize in itertools.product(WEIGHTINGS, [False, True]):
        options = _options("abs_gap", SPLITS[0], weighting, standardize)
        assert_matches_reference(s, t, group_counts=[3, 2, 1, 1, 2, 3], **options)


@pytest.mark.parametrize(("batch", "num_classes"), [(2, 100), (1, 1000)])
def test_wide_class_counts(batch: int, num_classes: int) -> None:
    s, t = _logits(batch, num_classes, seed=num_classes)
    assert_matches_reference(s, t, temperature=4.0, group_counts=[3, 2, 1, 1, 2, 3])


def test_agrees_with_the_vectorised_path_in_fp32() -> None:
    s, t = _logits(2, 100, seed=9)
    for weighting, standardize in zip(WEIGHTINGS, [False, True, True], strict=True):
        kwargs = dict(
            temperature=4.0,
            group_counts=[5, 4, 3, 2, 1, 1, 2, 3, 4, 5],
            weighting=weighting,
            standardize=standardize,
        )
        s1, s2 = s.clone().requires_grad_(True), s.clone().requires_grad_(True)
        fused, vectorised = fused_pcd_loss(s1, t, **kwargs), pcd_loss(s2, t, **kwargs)
        (fused + vectorised).backward()
        torch.testing.assert_close(fused, vectorised, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(s1.grad, s2.grad, rtol=1e-5, atol=1e-5 * s2.grad.abs().max())


def test_strided_rows_no_grad_and_a_frozen_teacher() -> None:
    s, t = _logits(3, 30, seed=5)
    wide = torch.randn(3, 40)
    wide[:, 5:35] = s
    kwargs = dict(temperature=4.0, group_counts=[3, 2, 1])
    want = ref_pcd_loss(s.double(), t.double(), **kwargs)
    with torch.no_grad():  # no gradient written
        got = fused_pcd_loss(wide[:, 5:35], t, **kwargs)
    torch.testing.assert_close(got.double(), want, rtol=3e-5, atol=1e-6)
    teacher = t.clone().requires_grad_(True)
    student = wide[:, 5:35].clone().requires_grad_(True)
    fused_pcd_loss(student, teacher, **kwargs).backward()
    assert teacher.grad is None  # the teacher is a constant, as in pcd_loss
    assert student.grad is not None and student.grad.abs().sum() > 0


# --------------------------------------------------------------------------- dispatch
def test_unsupported_reasons() -> None:
    s, t = _logits(2, 1000, seed=0)
    assert unsupported_reason(s, t, [3, 2, 1]) is None
    assert "float64" in unsupported_reason(s.double(), t, [3, 2, 1])
    assert "single class" in unsupported_reason(s[:, :1], t[:, :1], [1])
    assert "k=17" in unsupported_reason(s, t, [17, 1])


@pytest.fixture
def spied_fused(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Every call pcd_loss makes to the fused loss (which still runs)."""
    calls: list[dict] = []

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return fused_pcd_loss(*args, **kwargs)

    monkeypatch.setattr("pcd_core.losses.pcd.fused_pcd_loss", spy)
    monkeypatch.delenv("PCD_FUSED", raising=False)
    return calls


def test_pcd_loss_on_cpu_keeps_the_vectorised_path(spied_fused: list[dict]) -> None:
    s, t = _logits(2, 10, seed=0)
    pcd_loss(s, t, temperature=4.0, group_counts=[3, 2, 1])
    assert spied_fused == []


def test_pcd_loss_dispatches_where_the_kernel_serves(
    spied_fused: list[dict], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(fused_pcd, "FUSED_DEVICE_TYPES", frozenset({"cuda", "cpu"}))
    monkeypatch.setattr(fused_pcd, "_logged_reasons", set())
    s, t = _logits(2, 10, seed=0)
    kwargs = dict(temperature=4.0, group_counts=[3, 2, 1], weighting="released", stage_norm=True)
    got = pcd_loss(s, t, **kwargs)
    assert len(spied_fused) == 1 and spied_fused[0]["weighting"] == "released"
    torch.testing.assert_close(got.double(), ref_pcd_loss(s, t, **kwargs), rtol=3e-5, atol=1e-6)

    monkeypatch.setenv("PCD_FUSED", "0")  # the switch
    pcd_loss(s, t, **kwargs)
    assert len(spied_fused) == 1

    monkeypatch.delenv("PCD_FUSED")
    with fused_pcd.vectorised_path():  # the benchmarks' switch, restored after the block
        pcd_loss(s, t, **kwargs)
    assert len(spied_fused) == 1 and "PCD_FUSED" not in os.environ
    with caplog.at_level(logging.DEBUG, logger="pcd_core.losses.fused_pcd"):
        for _ in range(3):  # float64: the vectorised path, its reason logged once
            pcd_loss(s.double(), t.double(), **kwargs)
    assert len(spied_fused) == 1
    assert [r.getMessage() for r in caplog.records] == [
        "pcd_loss: vectorised path, not the fused kernel: "
        "float64 logits (the fused kernel computes in fp32)"
    ]


# ------------------------------------------------------------- the wide grid (-m fused_grid)
@pytest.mark.fused_grid
@pytest.mark.parametrize("num_classes", [2, 3, 10, 100, 1000])
@pytest.mark.parametrize("stages", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("ranking", RANKINGS)
def test_grid_matches_reference(
    request: pytest.FixtureRequest, num_classes: int, stages: int, ranking: str
) -> None:
    if "fused_grid" not in (request.config.option.markexpr or ""):
        pytest.skip("the wide interpreter grid (minutes to hours): pytest -m fused_grid")
    if stages > num_classes:
        pytest.skip("k > C is an error (tested with pcd_loss)")
    counts = JointSchedule(stages).group_counts(1)
    s, t = _logits(1 if num_classes >= 1000 else 2, num_classes, seed=num_classes * 10 + stages)
    for split, weighting, standardize in itertools.product(SPLITS, WEIGHTINGS, [False, True]):
        options = _options(ranking, split, weighting, standardize)
        assert_matches_reference(s, t, group_counts=counts, **options)
