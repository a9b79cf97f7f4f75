"""Invariants of pcd_loss that hold whatever the implementation."""

from __future__ import annotations

import pytest
import torch

from pcd_core.losses import JointSchedule, group_sizes, kd_loss, pcd_loss
from pcd_core.losses.pcd import _group_layout
from pcd_core.testing.reference import ref_pcd_loss

ALL_OPTIONS = [
    dict(ranking=r, split=sp, weighting=w, standardize=st)
    for r in ("abs_gap", "teacher", "none")
    for sp in ("even", "geometric")
    for w in ("paper", "none", "released")
    for st in (False, True)
]


def _logits(batch=6, classes=20, seed=0, scale=3.0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    s = torch.randn(batch, classes, generator=gen, dtype=dtype) * scale
    t = torch.randn(batch, classes, generator=gen, dtype=dtype) * scale
    return s, t


@pytest.mark.parametrize("opts", ALL_OPTIONS, ids=lambda o: "-".join(str(v) for v in o.values()))
def test_zero_when_equal_and_never_negative(opts) -> None:
    s, t = _logits()
    counts = [4, 3, 2, 1, 1, 2, 3, 4]
    assert pcd_loss(t, t, temperature=4.0, group_counts=counts, **opts).item() == 0.0
    for seed in range(5):
        s, t = _logits(seed=seed)
        # near-equal inputs are where rounding could push a term below zero
        for student in (s, t + 1e-4 * s):
            loss = pcd_loss(student, t, temperature=4.0, group_counts=counts, **opts)
            assert loss.item() >= 0.0


def test_single_full_group_without_weight_is_kd() -> None:
    s, t = _logits(batch=16, classes=100)
    for temperature in (1.0, 4.0):
        torch.testing.assert_close(
            pcd_loss(s, t, temperature=temperature, group_counts=[1], weighting="none"),
            kd_loss(s, t, temperature=temperature),
        )
        torch.testing.assert_close(
            pcd_loss(
                s, t, temperature=temperature, group_counts=[1], weighting="none", standardize=True
            ),
            kd_loss(s, t, temperature=temperature, standardize=True),
        )


@pytest.mark.parametrize("stages", [1, 3, 5])
def test_joint_directions(stages: int) -> None:
    s, t = _logits(classes=30)
    loss = {
        d: pcd_loss(s, t, temperature=4.0, group_counts=JointSchedule(stages, d).group_counts(1))
        for d in ("both", "f2c", "c2f")
    }
    torch.testing.assert_close(loss["f2c"], loss["c2f"])
    torch.testing.assert_close(loss["f2c"], loss["both"] / 2)


def test_both_directions_compute_each_stage_once() -> None:
    layout = _group_layout((3, 2, 1, 1, 2, 3), 10, "even", 2.0, False, torch.device("cpu"))
    # three distinct stages (3 + 2 + 1 groups), each weighted 2; atoms cut at 4, 5 and 7
    assert layout.num_groups == 6
    assert layout.coef.tolist() == [2.0] * 6
    assert layout.atom_of_position.tolist() == [0, 0, 0, 0, 1, 2, 2, 3, 3, 3]
    assert layout.pair_atom.shape[0] == 3 * layout.num_atoms


# ranking='none' groups by class index, so permuting classes changes its groups by definition.
PERMUTATION_INVARIANT = [o for o in ALL_OPTIONS if o["ranking"] != "none"]


@pytest.mark.parametrize(
    "opts", PERMUTATION_INVARIANT, ids=lambda o: "-".join(map(str, o.values()))
)
def test_class_permutation_invariance(opts) -> None:
    s, t = _logits(dtype=torch.float64)
    perm = torch.randperm(20, generator=torch.Generator().manual_seed(1))
    counts = [3, 2, 1, 1, 2, 3]
    a = pcd_loss(s, t, temperature=4.0, group_counts=counts, **opts)
    b = pcd_loss(s[:, perm], t[:, perm], temperature=4.0, group_counts=counts, **opts)
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("opts", ALL_OPTIONS[::2], ids=lambda o: "-".join(map(str, o.values())))
def test_per_sample_shift_invariance(opts) -> None:
    s, t = _logits(dtype=torch.float64)
    gen = torch.Generator().manual_seed(2)
    shift_s = torch.randn(6, 1, generator=gen, dtype=torch.float64) * 10
    counts = [4, 2, 1, 1, 2, 4]
    a = pcd_loss(s, t, temperature=4.0, group_counts=counts, **opts)
    # the same shift on both keeps |t - s| (hence the ranking); each softmax is shift-invariant
    b = pcd_loss(s + shift_s, t + shift_s, temperature=4.0, group_counts=counts, **opts)
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    if opts["ranking"] != "abs_gap":
        # rankings that do not compare s with t are unchanged by shifting the student alone
        c = pcd_loss(s + shift_s, t, temperature=4.0, group_counts=counts, **opts)
        torch.testing.assert_close(a, c, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("split,ratio", [("even", 2.0), ("geometric", 2.0), ("geometric", 0.3)])
@pytest.mark.parametrize("num_classes", [1, 2, 7, 10, 100, 1000])
def test_groups_cover_each_class_once(split: str, ratio: float, num_classes: int) -> None:
    for k in range(1, min(num_classes, 12) + 1):
        sizes = group_sizes(num_classes, k, split, ratio)
        assert len(sizes) == k
        assert all(size >= 1 for size in sizes)
        assert sum(sizes) == num_classes
    counts = tuple(range(1, min(num_classes, 6) + 1))
    layout = _group_layout(counts, num_classes, split, ratio, False, torch.device("cpu"))
    atoms = layout.atom_of_position
    assert atoms[0] == 0 and torch.all(atoms[1:] - atoms[:-1] >= 0)  # consecutive runs
    assert torch.all(atoms[1:] - atoms[:-1] <= 1)
    group_of_atom = layout.pair_group.view(len(counts), layout.num_atoms)
    first_group = 0
    for j, k in enumerate(counts):
        # the groups of stage j, expanded to ranked positions: consecutive, k distinct, and
        # their sizes are group_sizes(C, k)
        per_position = group_of_atom[j][atoms] - first_group
        assert torch.all(per_position[1:] >= per_position[:-1])
        assert per_position.unique().tolist() == list(range(k))
        assert torch.bincount(per_position).tolist() == group_sizes(num_classes, k, split, ratio)
        first_group += k
    num_segments = layout.num_groups
    assert num_segments == sum(counts)


def test_even_split_is_array_split_and_geometric_shape() -> None:
    assert group_sizes(10, 3) == [4, 3, 3]
    assert group_sizes(100, 6) == [17, 17, 17, 17, 16, 16]
    assert group_sizes(10, 3, "geometric", 1.0) == group_sizes(10, 3, "even")
    assert group_sizes(100, 3, "geometric", 1.0) == [34, 33, 33]
    assert group_sizes(10, 3, "geometric", 2.0) == [1, 3, 6]  # 1.43, 2.86, 5.71
    assert group_sizes(100, 4, "geometric", 0.5) == [53, 27, 13, 7]  # 53.3, 26.7, 13.3, 6.7
    assert group_sizes(10, 4, "geometric", 10.0) == [1, 1, 1, 7]  # two chunks raised to 1


def test_ranking_is_by_abs_gap() -> None:
    # Classes 0-1 agree exactly; classes 2-3 disagree strongly. By |t - s| the two
    # disagreeing classes come first and form one group (k=2), so each group is matched
    # within itself; by class index the groups are {0,1} (loss 0) and {2,3}.
    t = torch.tensor([[2.0, 1.0, 3.0, 0.0]], dtype=torch.float64)
    s = torch.tensor([[2.0, 1.0, 0.0, 3.0]], dtype=torch.float64)
    counts = [2]
    by_gap = pcd_loss(s, t, temperature=1.0, group_counts=counts, weighting="none")
    by_index = pcd_loss(
        s, t, temperature=1.0, group_counts=counts, weighting="none", ranking="none"
    )
    assert by_gap.item() == pytest.approx(by_index.item())  # here groups coincide: {2,3},{0,1}
    # Interleave the classes so that index order mixes agreeing and disagreeing classes.
    t2 = t[:, [2, 0, 3, 1]]
    s2 = s[:, [2, 0, 3, 1]]
    gap = pcd_loss(s2, t2, temperature=1.0, group_counts=counts, weighting="none")
    none = pcd_loss(s2, t2, temperature=1.0, group_counts=counts, weighting="none", ranking="none")
    torch.testing.assert_close(gap, by_gap)  # abs_gap sees through the permutation
    assert abs(gap.item() - none.item()) > 0.1
    want = ref_pcd_loss(s2, t2, temperature=1.0, group_counts=counts, weighting="none")
    torch.testing.assert_close(gap, want)


def test_k_greater_than_c_raises() -> None:
    s, t = _logits(classes=5)
    with pytest.raises(ValueError, match=r"k=6 exceeds the number of classes C=5"):
        pcd_loss(s, t, temperature=4.0, group_counts=[6, 1])
    with pytest.raises(ValueError, match=r"k=6.*C=5"):
        group_sizes(5, 6)
    with pytest.raises(ValueError, match="at least one stage"):
        pcd_loss(s, t, temperature=4.0, group_counts=[])
    with pytest.raises(ValueError, match="ranking must be one of abs_gap, teacher, none"):
        pcd_loss(s, t, temperature=4.0, group_counts=[1], ranking="random")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="temperature must be > 0"):
        pcd_loss(s, t, temperature=0.0, group_counts=[1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("weighting", ["paper", "none", "released"])
def test_stability(dtype: torch.dtype, weighting: str) -> None:
    cases = {
        "large": _logits(batch=4, classes=50, scale=1e4),
        "batch1": _logits(batch=1, classes=10),
        "two_classes": _logits(batch=4, classes=2),
    }
    for name, (s, t) in cases.items():
        if dtype != torch.float32 and name == "large":
            s, t = s.clamp(-6e4, 6e4), t.clamp(-6e4, 6e4)  # fp16's range
        s = s.to(dtype).requires_grad_(True)
        t = t.to(dtype)
        counts = JointSchedule(min(3, s.shape[1])).group_counts(1)
        for standardize in (False, True):
            loss = pcd_loss(
                s,
                t,
                temperature=4.0,
                group_counts=counts,
                weighting=weighting,
                standardize=standardize,
            )
            assert loss.dtype == torch.float32, name
            assert torch.isfinite(loss), name
            (grad,) = torch.autograd.grad(loss, s)
            assert grad.dtype == dtype
            assert torch.isfinite(grad.float()).all(), name
            if name == "large" and not standardize:
                assert loss.item() > 0


def test_fp32_under_autocast() -> None:
    s, t = _logits(batch=8, classes=100)
    want = pcd_loss(s, t, temperature=4.0, group_counts=[3, 2, 1])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = pcd_loss(s, t, temperature=4.0, group_counts=[3, 2, 1])
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want)


def test_operator_count_does_not_grow_with_stages() -> None:
    from torch.utils._python_dispatch import TorchDispatchMode

    class CountOps(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.ops = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops += 1
            return func(*args, **(kwargs or {}))

    s, t = _logits(batch=8, classes=100)
    s.requires_grad_(True)
    counts = {}
    for stages in (1, 3, 6):
        group_counts = JointSchedule(stages).group_counts(1)
        pcd_loss(s, t, temperature=4.0, group_counts=group_counts)  # build the cached layout
        s.grad = None
        with CountOps() as mode:
            pcd_loss(s, t, temperature=4.0, group_counts=group_counts).backward()
        counts[stages] = mode.ops
    assert counts[1] == counts[3] == counts[6], counts


@pytest.mark.parametrize("weighting", ["paper", "none", "released"])
@pytest.mark.parametrize("scale", [0.01, 1.0, 30.0, 300.0])
def test_float32_accuracy_across_logit_scales(weighting: str, scale: float) -> None:
    s, t = _logits(batch=8, classes=100, seed=4, scale=scale, dtype=torch.float64)
    counts = [5, 4, 3, 2, 1]
    s32 = s.float().requires_grad_(True)
    got = pcd_loss(s32, t.float(), temperature=4.0, group_counts=counts, weighting=weighting)
    s64 = s.clone().requires_grad_(True)
    want = ref_pcd_loss(s64, t, temperature=4.0, group_counts=counts, weighting=weighting)
    # near-uniform logits give tiny KLs whose fp32 rounding is absolute (~1e-6), as for
    # torch's own kl_div; elsewhere the error is relative
    torch.testing.assert_close(got.double(), want, rtol=2e-4, atol=1e-5)
    got.backward()
    want.backward()
    torch.testing.assert_close(s32.grad.double(), s64.grad, rtol=1e-3, atol=1e-6)


def test_teacher_is_a_constant() -> None:
    s, t = _logits()
    s.requires_grad_(True)
    t.requires_grad_(True)
    pcd_loss(s, t, temperature=4.0, group_counts=[3, 2, 1]).backward()
    assert s.grad is not None and t.grad is None
