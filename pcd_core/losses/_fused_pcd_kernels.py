"""Triton kernel of the fused PCD loss: one program per sample, every stage at once.

Imported only through ``pcd_core.losses.fused_pcd`` (which falls back when triton is missing).
With ``TRITON_INTERPRET=1`` set before triton is imported, the kernel runs on CPU tensors.

One launch does, per row: load the logits (any float dtype, computed in fp32), standardise
them, rank the classes with an in-register bitonic sort of packed (key, class) int64 words
(stable and descending, like ``torch.sort(..., descending=True, stable=True)``), reload them
in ranked order, and for each distinct stage reduce its groups (contiguous runs of ranked
positions) through a [group, position] membership mask with local-max shifts. It writes the
row's loss and, when asked, the analytic gradient of that loss with respect to the raw student
logits, so the backward pass is a single multiplication by the upstream gradient.
"""

from __future__ import annotations

import triton
import triton.language as tl

RANKING_CODES = {"none": 0, "abs_gap": 1, "teacher": 2}
WEIGHTING_CODES = {"none": 0, "paper": 1, "released": 2}

# Same role as pcd.py's floor of the cosine's norm product; only degenerate groups reach it
# (a one-class group under `released`, or a padding group), and those carry coefficient 0.
COS_EPS = tl.constexpr(1e-24)
STANDARDIZE_EPS = tl.constexpr(1e-7)


@triton.jit
def _group_sum(member, v):
    """Per-group sums [G] of a per-position vector v [C]."""
    return tl.sum(tl.where(member, v[None, :], 0.0), axis=1)


@triton.jit
def _spread(member, v):
    """Per-position values [C] of a per-group vector v [G] (0 outside every group)."""
    return tl.sum(tl.where(member, v[:, None], 0.0), axis=0)


@triton.jit
def _moments(z, valid, num_classes):
    """Mean, unbiased std + eps and unbiased std of one row (padding holds 0)."""
    mean = tl.sum(z, axis=0) / num_classes
    centred = tl.where(valid, z - mean, 0.0)
    std = tl.sqrt(tl.sum(centred * centred, axis=0) / (num_classes - 1))
    return mean, std + STANDARDIZE_EPS, std


@triton.jit
def _descending_order(key, offs, valid):
    """Class index at every ranked position: key descending, ties by class index (stable)."""
    key = tl.where(key == 0.0, 0.0, key)  # -0.0 ties with 0.0, as in a float comparison
    bits = key.to(tl.int32, bitcast=True)
    ascending = tl.where(bits >= 0, bits, bits ^ 0x7FFFFFFF)  # int order == float order
    descending = tl.where(valid, ~ascending, 0x7FFFFFFF)  # padding sorts last
    packed = (descending.to(tl.int64) << 32) | offs.to(tl.int64)
    return tl.sort(packed).to(tl.int32)  # the low 32 bits: the class index


@triton.jit
def _stage(
    x,
    y,
    offs,
    valid,
    table_ptr,
    coef_ptr,
    stage,
    WEIGHTING: tl.constexpr,
    WEIGHT_GRAD: tl.constexpr,
    G_BLOCK: tl.constexpr,
):
    """One stage's sum of coef_g * w_g * KL_g (in units of 1/T^2) and its gradient in y."""
    g = tl.arange(0, G_BLOCK)
    starts = tl.load(table_ptr + (2 * stage) * G_BLOCK + g)
    ends = tl.load(table_ptr + (2 * stage + 1) * G_BLOCK + g)
    coef = tl.load(coef_ptr + stage * G_BLOCK + g)
    member = (offs[None, :] >= starts[:, None]) & (offs[None, :] < ends[:, None])
    nonempty = ends > starts

    # softmax pieces relative to each group's own maximum: nothing overflows or underflows
    x_max = tl.where(nonempty, tl.max(tl.where(member, x[None, :], float("-inf")), axis=1), 0.0)
    y_max = tl.where(nonempty, tl.max(tl.where(member, y[None, :], float("-inf")), axis=1), 0.0)
    ux = x - _spread(member, x_max)
    uy = y - _spread(member, y_max)
    ex = tl.where(valid, tl.exp(ux), 0.0)
    ey = tl.where(valid, tl.exp(uy), 0.0)
    zx = tl.where(nonempty, _group_sum(member, ex), 1.0)
    zy = tl.where(nonempty, _group_sum(member, ey), 1.0)
    log_zy = tl.log(zy)
    kl_raw = _group_sum(member, ex * (ux - uy)) / zx - tl.log(zx) + log_zy
    kl = tl.maximum(kl_raw, 0.0)  # >= 0 exactly; drop rounding noise (as pcd.py does)

    if WEIGHTING == 0:
        weight = tl.full([G_BLOCK], 1.0, tl.float32)
    elif WEIGHTING == 1:  # cos(p, q): the normalisers cancel
        dot = _group_sum(member, ex * ey)
        q_sq = _group_sum(member, ey * ey)
        inv_norms = tl.rsqrt(tl.maximum(_group_sum(member, ex * ex) * q_sq, COS_EPS))
        weight = tl.maximum(1.0 - dot * inv_norms, 0.0)
    else:  # cos(p, log q)
        log_q = tl.where(valid, uy - _spread(member, log_zy), 0.0)
        dot = _group_sum(member, ex * log_q)
        o_sq = _group_sum(member, log_q * log_q)
        o_sum = _group_sum(member, log_q)
        inv_norms = tl.rsqrt(tl.maximum(_group_sum(member, ex * ex) * o_sq, COS_EPS))
        weight = tl.maximum(1.0 - dot * inv_norms, 0.0)
    loss = tl.sum(coef * weight * kl, axis=0)

    # d KL / d y_i = q_i - p_i; the weight's gradient is that of the unclamped cosine
    c_kl = coef * weight
    grad = _spread(member, c_kl / zy) * ey - _spread(member, c_kl / zx) * ex
    if WEIGHT_GRAD:
        c_w = coef * kl * inv_norms
        if WEIGHTING == 1:  # d cos / d y_i = (e_x,i e_y,i - (A / Q2) e_y,i^2) / |e_x| |e_y|
            grad -= _spread(member, c_w) * ex * ey
            grad += _spread(member, c_w * dot / tl.maximum(q_sq, COS_EPS)) * ey * ey
        elif WEIGHTING == 2:
            # d cos / d y_i = r [e_x,i - Zx q_i - (A / O2) (log q_i - q_i sum log q)]
            a_over_o2 = dot / tl.maximum(o_sq, COS_EPS)
            grad -= _spread(member, c_w) * ex
            grad += _spread(member, c_w * (zx - a_over_o2 * o_sum) / zy) * ey
            grad += _spread(member, c_w * a_over_o2) * log_q
    return loss, grad


@triton.jit
def fused_pcd_kernel(
    s_ptr,
    t_ptr,
    s_row_stride,
    t_row_stride,
    table_ptr,
    coef_ptr,
    num_stages,
    num_classes,
    inv_temperature,
    out_scale,
    row_loss_ptr,
    grad_ptr,
    RANKING: tl.constexpr,
    WEIGHTING: tl.constexpr,
    STANDARDIZE: tl.constexpr,
    WEIGHT_GRAD: tl.constexpr,
    WRITE_GRAD: tl.constexpr,
    C_BLOCK: tl.constexpr,
    G_BLOCK: tl.constexpr,
):
    """Row ``program_id(0)``: ``out_scale * sum_stages`` of the stage terms into row_loss_ptr
    and, if WRITE_GRAD, its gradient in the raw student logits into grad_ptr ([B, C], fp32).

    ``table_ptr``: int32 [stages, 2, G_BLOCK], the first and past-the-last ranked position of
    every group (empty past k); ``coef_ptr``: fp32 [stages, G_BLOCK], multiplicity (over the
    stage count under stage_norm), 0 for one-class and padding groups.
    """
    row = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, C_BLOCK)
    valid = offs < num_classes
    s_row = s_ptr + row * s_row_stride
    t_row = t_ptr + row * t_row_stride

    # standardisation and ranking read the row in class order
    if STANDARDIZE:
        s0 = tl.load(s_row + offs, mask=valid, other=0.0).to(tl.float32)
        t0 = tl.load(t_row + offs, mask=valid, other=0.0).to(tl.float32)
        s_mean, s_denom, s_std = _moments(s0, valid, num_classes)
        t_mean, t_denom, _ = _moments(t0, valid, num_classes)
        s0 = tl.where(valid, s0 - s_mean, 0.0) / s_denom
        t0 = tl.where(valid, t0 - t_mean, 0.0) / t_denom
    elif RANKING != 0:
        s0 = tl.load(s_row + offs, mask=valid, other=0.0).to(tl.float32)
        t0 = tl.load(t_row + offs, mask=valid, other=0.0).to(tl.float32)
    if RANKING == 0:
        order = offs
    elif RANKING == 1:
        order = _descending_order(tl.abs(t0 - s0), offs, valid)
    else:
        order = _descending_order(t0, offs, valid)

    # ranked logits (a gather from the rows just read: L1/L2 hits)
    s = tl.load(s_row + order, mask=valid, other=0.0).to(tl.float32)
    t = tl.load(t_row + order, mask=valid, other=0.0).to(tl.float32)
    if STANDARDIZE:  # same arithmetic as above: the ranked values are bit-identical
        s_centred = tl.where(valid, s - s_mean, 0.0)
        s = s_centred / s_denom
        t = tl.where(valid, t - t_mean, 0.0) / t_denom
    y = s * inv_temperature
    x = t * inv_temperature

    loss = tl.full([], 0.0, tl.float32)
    grad = tl.zeros([C_BLOCK], dtype=tl.float32)
    for stage in range(num_stages):
        stage_loss, stage_grad = _stage(
            x, y, offs, valid, table_ptr, coef_ptr, stage, WEIGHTING, WEIGHT_GRAD, G_BLOCK
        )
        loss += stage_loss
        grad += stage_grad
    tl.store(row_loss_ptr + row, loss * out_scale)

    if WRITE_GRAD:
        grad = tl.where(valid, grad * (inv_temperature * out_scale), 0.0)  # d row / d s'
        if STANDARDIZE:
            # s' = (s - m) / (std + eps): project out the mean and the std direction
            grad_mean = tl.sum(grad, axis=0) / num_classes
            along = tl.sum(grad * s_centred, axis=0)
            # a constant row (std 0) has no std direction: the vectorised path's limit, too
            std_scale = s_denom * (num_classes - 1) * tl.maximum(s_std, 1e-30)
            std_term = tl.where(s_std > 0.0, along / std_scale, 0.0)
            grad = ((grad - grad_mean) - std_term * s_centred) / s_denom
        tl.store(grad_ptr + row * num_classes + order, grad, mask=valid)
