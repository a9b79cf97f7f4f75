"""Helpers shared by the loss functions: input checks and fp32 compute."""

from __future__ import annotations

import torch
from torch import Tensor


def check_logit_pair(student_logits: Tensor, teacher_logits: Tensor) -> None:
    """Shapes only (no host sync): both [B, C], same shape, C >= 1, B >= 1."""
    if student_logits.dim() != 2:
        raise ValueError(
            f"student_logits must be 2-D [batch, classes], got shape {tuple(student_logits.shape)}"
        )
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            "student_logits and teacher_logits must have the same shape, got "
            f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}"
        )
    if student_logits.shape[0] < 1 or student_logits.shape[1] < 1:
        raise ValueError(f"logits must be non-empty, got shape {tuple(student_logits.shape)}")


def check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def compute_dtype(*tensors: Tensor) -> torch.dtype:
    """float64 stays float64 (tests, gradcheck); everything else is computed in float32."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def prepared_pair(
    student_logits: Tensor, teacher_logits: Tensor, temperature: float, standardize: bool
) -> tuple[Tensor, Tensor]:
    """Checked logits in the compute dtype, standardised if asked (call inside a region with
    autocast disabled)."""
    check_logit_pair(student_logits, teacher_logits)
    check_temperature(temperature)
    dtype = compute_dtype(student_logits, teacher_logits)
    s = student_logits.to(dtype)
    t = teacher_logits.to(dtype)
    if standardize:
        from pcd_core.losses.standardize import standardize_logits

        s, t = standardize_logits(s), standardize_logits(t)
    return s, t
