"""Deterministic, stratified index splits."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def train_val_split(
    labels: Tensor, val_fraction: float = 0.1, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Split the positions of ``labels`` into (train, val) index tensors, stratified per class.

    The validation set holds ``round(N * val_fraction)`` samples, shared out over the classes in
    proportion to their sizes (largest remainder first); a class always keeps at least one
    training sample. The result depends only on ``labels``, ``val_fraction`` and ``seed``.
    Both tensors are int64, sorted and disjoint; ``val_fraction == 0`` gives an empty val.
    """
    if not isinstance(val_fraction, (int, float)) or not 0.0 <= float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    labels = torch.as_tensor(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be a 1-D tensor, got shape {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor, got {labels.dtype}")
    labels = labels.detach().to("cpu", torch.int64)
    n = labels.numel()
    empty = torch.empty(0, dtype=torch.int64)
    if n == 0:
        return empty, empty.clone()

    classes, counts = torch.unique(labels, sorted=True, return_counts=True)
    counts_np = counts.numpy().astype(np.int64)
    exact = counts_np * float(val_fraction)
    cap = np.maximum(counts_np - 1, 0)
    quota = np.minimum(np.floor(exact).astype(np.int64), cap)
    target = min(int(n * float(val_fraction) + 0.5), int(cap.sum()))
    remaining = target - int(quota.sum())
    if remaining > 0:
        frac = exact - np.floor(exact)
        for c in np.argsort(-frac, kind="stable"):
            if remaining == 0:
                break
            if quota[c] < cap[c]:
                quota[c] += 1
                remaining -= 1

    gen = torch.Generator().manual_seed(int(seed))
    train_parts: list[Tensor] = []
    val_parts: list[Tensor] = []
    for c, k in zip(classes.tolist(), quota.tolist(), strict=True):
        idx = torch.nonzero(labels == c, as_tuple=False).reshape(-1)
        perm = idx[torch.randperm(idx.numel(), generator=gen)]
        val_parts.append(perm[:k])
        train_parts.append(perm[k:])
    train = torch.sort(torch.cat(train_parts)).values
    val = torch.sort(torch.cat(val_parts)).values if val_parts else empty
    return train, val
