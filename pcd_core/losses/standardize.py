"""Logit standardisation (Sun et al., CVPR 2024), a switch on every distillation method."""

from __future__ import annotations

from torch import Tensor

STANDARDIZE_EPS = 1e-7


def standardize_logits(logits: Tensor) -> Tensor:
    """Return ``(z - mean(z)) / (std(z) + 1e-7)`` per row, with the unbiased std.

    A single-class row has an undefined unbiased std; it is mapped to zeros (its softmax is
    1 whatever the logit), which keeps the loss finite.
    """
    mean = logits.mean(dim=-1, keepdim=True)
    if logits.shape[-1] < 2:
        return logits - mean
    std = logits.std(dim=-1, keepdim=True, unbiased=True)
    return (logits - mean) / (std + STANDARDIZE_EPS)
