"""Baselines in the same engine: Hinton's KD and decoupled KD (DKD, Zhao et al. 2022)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from pcd_core.losses._common import check_logit_pair, prepared_pair


def kd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    *,
    temperature: float,
    standardize: bool = False,
) -> Tensor:
    """``T^2 * KL(softmax(t/T) || softmax(s/T))``, batch mean of the per-sample KL.

    Computed in fp32 (float64 inputs stay float64) even under autocast; the teacher side is
    used as given (the caller passes teacher logits produced under ``no_grad``).
    """
    with torch.autocast(student_logits.device.type, enabled=False):
        s, t = prepared_pair(student_logits, teacher_logits, temperature, standardize)
        log_q = F.log_softmax(s / temperature, dim=1)
        log_p = F.log_softmax(t / temperature, dim=1)
        kl = (log_p.exp() * (log_p - log_q)).sum(dim=1)
        return kl.mean() * temperature**2


def dkd_parts(
    student_logits: Tensor,
    teacher_logits: Tensor,
    target: Tensor,
    *,
    temperature: float,
    standardize: bool = False,
) -> tuple[Tensor, Tensor]:
    """DKD's target-class (TCKD) and non-target-class (NCKD) terms, each ``T^2 * KL``, batch mean.

    TCKD is the KL between the binary distributions [p_target, 1 - p_target]; NCKD is the KL
    between the distributions over the C - 1 non-target classes, renormalised. The
    non-target classes are gathered exactly rather than masked with a large negative
    constant (mdistiller's ``- 1000 * gt_mask``), which fails for logits of large magnitude.
    """
    check_logit_pair(student_logits, teacher_logits)
    batch, num_classes = student_logits.shape
    if num_classes < 3:
        raise ValueError(
            f"DKD needs at least 3 classes (its non-target term is undefined for C={num_classes})"
        )
    if target.shape != (batch,):
        raise ValueError(f"target must have shape ({batch},), got {tuple(target.shape)}")
    with torch.autocast(student_logits.device.type, enabled=False):
        s, t = prepared_pair(student_logits, teacher_logits, temperature, standardize)
        s = s / temperature
        t = t / temperature
        target = target.long().unsqueeze(1)

        # Binary (target vs rest) log-probabilities, via log-sum-exp for stability.
        log_q_all = F.log_softmax(s, dim=1)
        log_p_all = F.log_softmax(t, dim=1)
        log_q_t = log_q_all.gather(1, target).squeeze(1)
        log_p_t = log_p_all.gather(1, target).squeeze(1)
        # log(1 - p_t) computed as log(sum over non-target p) to stay exact when p_t -> 1.
        nontarget = _nontarget_index(target.squeeze(1), num_classes)
        s_nt = s.gather(1, nontarget)
        t_nt = t.gather(1, nontarget)
        lse_s = torch.logsumexp(s, dim=1)
        lse_t = torch.logsumexp(t, dim=1)
        log_q_rest = torch.logsumexp(s_nt, dim=1) - lse_s
        log_p_rest = torch.logsumexp(t_nt, dim=1) - lse_t
        tckd = log_p_t.exp() * (log_p_t - log_q_t) + log_p_rest.exp() * (log_p_rest - log_q_rest)

        log_q_nt = F.log_softmax(s_nt, dim=1)
        log_p_nt = F.log_softmax(t_nt, dim=1)
        nckd = (log_p_nt.exp() * (log_p_nt - log_q_nt)).sum(dim=1)
        scale = temperature**2
        return tckd.mean() * scale, nckd.mean() * scale


def dkd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    target: Tensor,
    *,
    alpha: float,
    beta: float,
    temperature: float,
    standardize: bool = False,
) -> Tensor:
    """``alpha * TCKD + beta * NCKD`` (see :func:`dkd_parts`)."""
    tckd, nckd = dkd_parts(
        student_logits, teacher_logits, target, temperature=temperature, standardize=standardize
    )
    return alpha * tckd + beta * nckd


def _nontarget_index(target: Tensor, num_classes: int) -> Tensor:
    """[B, C-1] indices of the non-target classes, in class order: j + (j >= target)."""
    j = torch.arange(num_classes - 1, device=target.device).unsqueeze(0)
    return j + (j >= target.unsqueeze(1)).long()
