"""Progressive Class-level Distillation (PCD): the loss. docs/method.md explains the method
as pcd implements it, every option below and the reading chosen for each.

Everything is vectorised over samples, stages and groups. Per call: one sort (for the
ranking), one gather per logit tensor, and a fixed number of segment reductions over a
[stage, class] group-id map, so the number of kernels does not grow with the number of
stages or groups. Repeated stages (the two passes of the joint schedule) are computed once
and weighted by their multiplicity.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, get_args

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from pcd_core.losses._common import (
    check_logit_pair,
    check_temperature,
    compute_dtype,
    prepared_pair,
)
from pcd_core.losses.fused_pcd import fused_pcd_loss
from pcd_core.losses.fused_pcd import serves as fused_serves
from pcd_core.losses.standardize import standardize_logits

# The allowed values of pcd_loss's named choices, defined here only: the method registry's
# option schema (pcd_core.methods.PCDOptions) uses these types. See docs/method.md.
Ranking = Literal["abs_gap", "teacher", "none"]
Split = Literal["even", "geometric"]
Weighting = Literal["paper", "none", "released"]

RANKINGS: tuple[str, ...] = get_args(Ranking)
SPLITS: tuple[str, ...] = get_args(Split)
WEIGHTINGS: tuple[str, ...] = get_args(Weighting)

# Floor of the squared-norm product inside the cosine. Only reached by a one-class group under
# the `released` weighting (where ||log q|| = 0); such a group contributes 0 anyway.
_COS_EPS = 1e-24


def group_sizes(num_classes: int, k: int, split: Split = "even", ratio: float = 2.0) -> list[int]:
    """Sizes of the k consecutive chunks that a stage cuts the ranked classes into.

    ``even``: sizes differ by at most one, larger chunks first (``numpy.array_split``).
    ``geometric``: sizes proportional to ``ratio**0, ..., ratio**(k-1)`` from the front,
    rounded by largest remainder (ties to the front) to sum to C; a chunk rounded to 0 is
    raised to 1 by taking one class from the currently largest chunk (the rearmost among
    equals). ``ratio == 1`` is ``even``.
    """
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"group count k must be a positive integer, got {k!r}")
    if k > num_classes:
        raise ValueError(
            f"group count k={k} exceeds the number of classes C={num_classes}: "
            "every group must be non-empty"
        )
    if split == "even":
        base, extra = divmod(num_classes, k)
        return [base + 1 if i < extra else base for i in range(k)]
    if split == "geometric":
        if not ratio > 0:
            raise ValueError(f"geometric split needs ratio > 0, got {ratio}")
        weights = [ratio**i for i in range(k)]
        total = sum(weights)
        raw = [num_classes * w / total for w in weights]
        sizes = [int(r) for r in raw]
        remainder = num_classes - sum(sizes)
        # Largest fractional part first; ties go to the front (stable sort).
        order = sorted(range(k), key=lambda i: -(raw[i] - sizes[i]))
        for i in order[:remainder]:
            sizes[i] += 1
        for i in range(k):
            if sizes[i] == 0:
                donor = max(range(k), key=lambda j: (sizes[j], j))
                sizes[donor] -= 1
                sizes[i] = 1
        return sizes
    raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")


def _validate_options(ranking: str, split: str, weighting: str) -> None:
    if ranking not in RANKINGS:
        raise ValueError(f"ranking must be one of {', '.join(RANKINGS)}; got {ranking!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {', '.join(WEIGHTINGS)}; got {weighting!r}")


@dataclass(frozen=True)
class _Layout:
    """Where every group of every stage lies, as index tensors on one device.

    The stage boundaries cut the ranked positions into *atoms*: maximal runs of positions
    that share a group in every stage. Each group is a run of whole atoms, so per-class work
    is done once (reduced to atoms) and every stage is assembled from the A <= C atoms: the
    cost of a call hardly depends on the number of stages.
    """

    atom_of_position: Tensor  # [C] long
    atom_size: Tensor  # [A] float: classes per atom
    pair_atom: Tensor  # [P] long: (stage, atom) pairs, P = stages * A
    pair_group: Tensor  # [P] long: the group of that atom in that stage
    coef: Tensor  # [N] float: stage multiplicity (/ count if stage_norm), 0 for 1-class groups
    num_atoms: int
    num_groups: int


@lru_cache(maxsize=256)
def _group_layout(
    group_counts: tuple[int, ...],
    num_classes: int,
    split: str,
    ratio: float,
    stage_norm: bool,
    device: torch.device,
    dtype: torch.dtype = torch.float64,
) -> _Layout:
    """Build (once per configuration and device) the atom/group layout of the stages."""
    multiplicity = Counter(group_counts)
    stages = [(k, group_sizes(num_classes, k, split, ratio)) for k in sorted(multiplicity)]  # type: ignore[arg-type]
    cuts = sorted({c for _, sizes in stages for c in _cumsum(sizes)[:-1]})
    bounds = [0, *cuts, num_classes]
    atom_of_position = [a for a in range(len(bounds) - 1) for _ in range(bounds[a + 1] - bounds[a])]
    norm = float(len(group_counts)) if stage_norm else 1.0
    pair_atom: list[int] = []
    pair_group: list[int] = []
    coef: list[float] = []
    for k, sizes in stages:
        ends = _cumsum(sizes)
        group = 0
        for atom in range(len(bounds) - 1):
            while bounds[atom] >= ends[group]:
                group += 1
            pair_atom.append(atom)
            pair_group.append(len(coef) + group)
        coef.extend(multiplicity[k] / norm if size > 1 else 0.0 for size in sizes)

    def as_long(values: list[int]) -> Tensor:
        return torch.tensor(values, dtype=torch.long, device=device)

    return _Layout(
        atom_of_position=as_long(atom_of_position),
        atom_size=torch.tensor(
            [bounds[a + 1] - bounds[a] for a in range(len(bounds) - 1)], dtype=dtype, device=device
        ),
        pair_atom=as_long(pair_atom),
        pair_group=as_long(pair_group),
        coef=torch.tensor(coef, dtype=dtype, device=device),
        num_atoms=len(bounds) - 1,
        num_groups=len(coef),
    )


def _cumsum(sizes: list[int]) -> list[int]:
    out, total = [], 0
    for size in sizes:
        total += size
        out.append(total)
    return out


def _segment_max(values: Tensor, index: Tensor, num_segments: int) -> Tensor:
    """Max of the rows of ``values`` [R, ...] per segment ``index`` [R] -> [num_segments, ...]."""
    out = values.new_full((num_segments, *values.shape[1:]), float("-inf"))
    shape = (-1,) + (1,) * (values.dim() - 1)
    return out.scatter_reduce_(0, index.view(shape).expand_as(values), values, "amax")


def _segment_sum(values: Tensor, index: Tensor, num_segments: int) -> Tensor:
    """Sum of the rows of ``values`` [R, ...] per segment ``index`` [R]."""
    out = values.new_zeros((num_segments, *values.shape[1:]))
    return out.index_add_(0, index, values)


class _GroupedKL(torch.autograd.Function):
    """Steps 4-6 on ranked logits, with an analytic backward.

    ``y`` and ``x`` are [B, C] student and teacher logits already divided by T (and
    standardised); ``order`` is the per-sample ranking (None: class order). Everything is
    class-major ([C, 2, B]) so that segment reductions add contiguous rows. Per class:
    ``u = z - max_atom``, ``e = exp(u)``, reduced to per-atom sums; per (stage, atom) pair the
    atom's share of its group (``beta = exp(max_atom - max_group) / Z_group``) turns those
    into every group's KL and cosine terms exactly (all shifts are local maxima, so nothing
    overflows or cancels at scale). The teacher is a constant.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        y: Tensor,
        x: Tensor,
        order: Tensor | None,
        layout: _Layout,
        weighting: str,
        detach_weight: bool,
    ) -> Tensor:
        lay = layout
        batch, num_classes = y.shape
        if order is not None:
            y, x = y.gather(1, order), x.gather(1, order)
        z = torch.stack((x.t(), y.t()), dim=1)  # [C, 2, B]: ranked position, teacher/student
        atom_max = _segment_max(z, lay.atom_of_position, lay.num_atoms)  # [A, 2, B]
        u = z.sub_(atom_max.index_select(0, lay.atom_of_position))  # <= 0
        e = u.exp()
        ex, ey, ux, uy = e[:, 0], e[:, 1], u[:, 0], u[:, 1]

        # per-class terms, summed per atom in one kernel
        released = weighting == "released"
        n_terms = 3 if weighting == "none" else (7 if released else 6)
        terms = z.new_empty((num_classes, n_terms, batch))
        terms[:, 0:2] = e
        torch.mul(ex, ux - uy, out=terms[:, 2])
        if weighting == "paper":
            torch.mul(ex, ey, out=terms[:, 3])
            torch.mul(ex, ex, out=terms[:, 4])
            torch.mul(ey, ey, out=terms[:, 5])
        elif released:
            torch.mul(ex, uy, out=terms[:, 3])
            torch.mul(ex, ex, out=terms[:, 4])
            terms[:, 5] = uy
            torch.mul(uy, uy, out=terms[:, 6])
        atom = _segment_sum(terms, lay.atom_of_position, lay.num_atoms)  # [A, n_terms, B]

        # every (stage, atom) pair: the atom's share of its group
        pa, pg = lay.pair_atom, lay.pair_group
        pair_max = atom_max.index_select(0, pa)  # [P, 2, B]
        group_max = _segment_max(pair_max, pg, lay.num_groups)
        shift = pair_max.sub_(group_max.index_select(0, pg))  # <= 0
        pair = atom.index_select(0, pa)  # [P, n_terms, B]
        scaled = shift.exp()
        norm = _segment_sum(pair[:, 0:2] * scaled, pg, lay.num_groups)  # Z' (group-max units)
        beta = scaled.div_(norm.index_select(0, pg))  # [P, 2, B]
        bx, by = beta[:, 0], beta[:, 1]
        log_norm = norm.log()

        n_group_terms = 1 if weighting == "none" else 4
        gterms = z.new_empty((pa.shape[0], n_group_terms, batch))
        # E_p[(x - max_g x) - (y - max_g y)] over the group
        torch.mul(bx, pair[:, 2] + pair[:, 0] * (shift[:, 0] - shift[:, 1]), out=gterms[:, 0])
        log_q_shift = None
        if weighting == "paper":
            torch.mul(bx * by, pair[:, 3], out=gterms[:, 1])  # sum p q
            torch.mul(bx * bx, pair[:, 4], out=gterms[:, 2])  # sum p^2
            torch.mul(by * by, pair[:, 5], out=gterms[:, 3])  # sum q^2
        elif released:
            # log q_i = uy_i + c, c = (max_a y - max_g y) - log Z'_y <= 0, like uy
            log_q_shift = shift[:, 1] - log_norm[:, 1].index_select(0, pg)
            torch.mul(bx, pair[:, 3] + log_q_shift * pair[:, 0], out=gterms[:, 1])  # sum p logq
            torch.mul(bx * bx, pair[:, 4], out=gterms[:, 2])  # sum p^2
            size = lay.atom_size.index_select(0, pa).unsqueeze(1)
            # sum (log q)^2 = sum uy^2 + 2 c sum uy + n c^2 (all terms >= 0: no cancellation)
            gterms[:, 3] = pair[:, 6] + log_q_shift * (2 * pair[:, 5] + size * log_q_shift)
        group = _segment_sum(gterms, pg, lay.num_groups)  # [N, n_group_terms, B]

        kl_raw = group[:, 0] - log_norm[:, 0] + log_norm[:, 1]
        kl = kl_raw.clamp_min(0.0)  # >= 0 in exact arithmetic; drop rounding noise
        if weighting == "none":
            weight = torch.ones_like(kl)
            inv_norms = None
        else:
            inv_norms = torch.rsqrt((group[:, 2] * group[:, 3]).clamp_min_(_COS_EPS))
            weight = (1.0 - group[:, 1] * inv_norms).clamp_min_(0.0)
        loss = (weight * kl * lay.coef.unsqueeze(1)).sum(0).mean()

        log_q_sum = None
        if released:  # sum_i log q_i, for the backward
            size = lay.atom_size.index_select(0, pa).unsqueeze(1)
            log_q_sum = _segment_sum(pair[:, 5] + size * log_q_shift, pg, lay.num_groups)
        ctx.layout = lay
        ctx.weighting = weighting
        ctx.weight_has_grad = weighting != "none" and not detach_weight
        ctx.save_for_backward(
            e,
            uy if released else None,
            beta,
            group,
            kl_raw,
            weight,
            inv_norms,
            log_q_shift,
            log_q_sum,
            order,
        )
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor):  # type: ignore[override]
        e, uy, beta, group, kl_raw, weight, inv_norms, log_q_shift, log_q_sum, order = (
            ctx.saved_tensors
        )
        lay: _Layout = ctx.layout
        pa, pg = lay.pair_atom, lay.pair_group
        batch = e.shape[2]
        ex, ey = e[:, 0], e[:, 1]
        bx, by = beta[:, 0], beta[:, 1]
        scale = (grad_out / batch) * lay.coef.unsqueeze(1)  # dL/dD_g, [N, B]
        # d KL_g / d y_i = q_i - p_i, with p_i = bx e_x,i and q_i = by e_y,i
        # The forward clamps KL and w at 0 to hide rounding noise (both are >= 0 exactly);
        # the gradient is that of the unclamped terms, so tiny KLs still teach.
        c_kl = (scale * weight).index_select(0, pg)  # [P, B]
        coef_ey = c_kl * by
        coef_ex = -c_kl * bx
        coef_exy = coef_ey2 = coef_uy = coef_one = None
        if ctx.weight_has_grad:
            c_w = (scale * kl_raw.clamp_min(0.0)).index_select(0, pg)
            r = inv_norms.index_select(0, pg)  # 1 / (|p| |partner|)
            if ctx.weighting == "paper":
                # w = 1 - A r, A = sum p q;  d cos / d y_i = r q_i (p_i - (A / Q2) q_i)
                a_over_q2 = (group[:, 1] / group[:, 3]).index_select(0, pg)
                coef_exy = -c_w * r * bx * by
                coef_ey2 = c_w * r * a_over_q2 * by * by
            else:
                # partner o = log q;  d cos / d y_i = r (p_i - (A / O2) o_i) - q_i sum_j a_j
                a_over_o2 = group[:, 1] * group[:, 2] * inv_norms.square()  # A / O2, finite
                a_sum = inv_norms * (1.0 - a_over_o2 * log_q_sum)  # sum_j a_j
                k = c_w * r * a_over_o2.index_select(0, pg)
                coef_ex = coef_ex - c_w * r * bx
                coef_uy = k
                coef_one = k * log_q_shift
                coef_ey = coef_ey + c_w * a_sum.index_select(0, pg) * by
        # sum every stage's coefficient onto its atom, then expand to the ranked classes
        parts = [coef_ey, coef_ex] + [
            c for c in (coef_exy, coef_ey2, coef_uy, coef_one) if c is not None
        ]
        per_atom = _segment_sum(torch.stack(parts, dim=1), pa, lay.num_atoms)
        per_class = per_atom.index_select(0, lay.atom_of_position)  # [C, n, B]
        grad = ey * per_class[:, 0]
        grad.addcmul_(ex, per_class[:, 1])
        if ctx.weighting == "paper" and ctx.weight_has_grad:
            grad.addcmul_(ex * ey, per_class[:, 2]).addcmul_(ey * ey, per_class[:, 3])
        elif ctx.weighting == "released" and ctx.weight_has_grad:
            grad.addcmul_(uy, per_class[:, 2]).add_(per_class[:, 3])
        grad = grad.t().contiguous()  # [B, C], ranked
        if order is not None:
            grad = torch.empty_like(grad).scatter_(1, order, grad)
        return grad, None, None, None, None, None


def pcd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    *,
    temperature: float,
    group_counts: Sequence[int],
    ranking: Ranking = "abs_gap",
    split: Split = "even",
    weighting: Weighting = "paper",
    standardize: bool = False,
    detach_weight: bool = False,
    stage_norm: bool = False,
    split_ratio: float = 2.0,
) -> Tensor:
    """The PCD distillation term (docs/method.md, "What one call of pcd_loss computes"), a
    scalar batch mean.

    ``group_counts`` lists the k of every active stage term, repeats allowed: the joint
    schedule with S=3 in both directions is ``[3, 2, 1, 1, 2, 3]``. Each group g of a stage
    contributes ``w_g * T^2 * KL(softmax(t_g/T) || softmax(s_g/T))`` over its classes only.
    ``split_ratio`` is the ratio r of the ``geometric`` split (ignored by ``even``).
    """
    check_logit_pair(student_logits, teacher_logits)
    check_temperature(temperature)
    _validate_options(ranking, split, weighting)
    counts = tuple(int(k) for k in group_counts)
    if not counts:
        raise ValueError("group_counts must list at least one stage")
    _batch, num_classes = student_logits.shape
    if any(k < 1 for k in counts):
        raise ValueError(f"every group count must be >= 1, got group_counts={list(counts)}")
    if max(counts) > num_classes:
        raise ValueError(
            f"group count k={max(counts)} exceeds the number of classes C={num_classes}: "
            "every group must be non-empty"
        )
    if fused_serves(student_logits, teacher_logits, counts):  # CUDA: one Triton kernel
        return fused_pcd_loss(
            student_logits,
            teacher_logits,
            temperature=temperature,
            group_counts=counts,
            ranking=ranking,
            split=split,
            weighting=weighting,
            standardize=standardize,
            detach_weight=detach_weight,
            stage_norm=stage_norm,
            split_ratio=split_ratio,
        )
    device = student_logits.device
    dtype = compute_dtype(student_logits, teacher_logits)
    layout = _group_layout(
        counts, num_classes, split, float(split_ratio), bool(stage_norm), device, dtype
    )

    with torch.autocast(device.type, enabled=False):
        s = student_logits.to(dtype)
        t = teacher_logits.detach().to(dtype)  # the teacher is frozen: a constant here
        if standardize:
            s, t = standardize_logits(s), standardize_logits(t)
        order = None
        if ranking != "none":
            with torch.no_grad():
                key = (t - s).abs() if ranking == "abs_gap" else t
                order = torch.sort(key, dim=1, descending=True, stable=True).indices
        loss = _GroupedKL.apply(
            s / temperature, t / temperature, order, layout, weighting, bool(detach_weight)
        )
        return loss * temperature**2


def released_pcd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    *,
    temperature: float,
    stages: int,
    standardize: bool = False,
) -> Tensor:
    """What the authors' public code computes (not the paper's method), for comparison.

    Its groups collapse into the full class set, so it reduces to the closed form
    ``2S * T^2 * KL(softmax(t/T) || softmax(s/T)) * mean_b(1 - cos(p_t, log q_s))``: the
    batch-mean KL times the batch-mean weight (a product of two means). ``alpha`` is applied
    by the method, as for every other loss.
    """
    if stages < 1:
        raise ValueError(f"stages must be >= 1, got {stages}")
    with torch.autocast(student_logits.device.type, enabled=False):
        s, t = prepared_pair(student_logits, teacher_logits, temperature, standardize)
        log_q = torch.log_softmax(s / temperature, dim=1)
        log_p = torch.log_softmax(t / temperature, dim=1)
        p = log_p.exp()
        kl = (p * (log_p - log_q)).sum(dim=1).mean()
        cos = (p * log_q).sum(dim=1) * torch.rsqrt(
            ((p * p).sum(dim=1) * (log_q * log_q).sum(dim=1)).clamp_min(_COS_EPS)
        )
        return 2 * stages * temperature**2 * kl * (1.0 - cos).mean()
