"""A deliberately naive, loop-based float64 implementation of the PCD loss (docs/method.md)
and of KD, for the tests and the GPU check.

It follows the method's text step by step (python loops over samples, stages and groups;
plain softmax per group) and shares no code with pcd_core.losses. Imports only torch.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def ref_standardize(z: Tensor) -> Tensor:
    out = []
    for row in z:
        mean = row.sum() / row.numel()
        var = ((row - mean) ** 2).sum() / (row.numel() - 1)
        out.append((row - mean) / (var.sqrt() + 1e-7))
    return torch.stack(out)


def ref_sizes(num_classes: int, k: int, split: str, ratio: float) -> list[int]:
    if k > num_classes:
        raise ValueError("k > C")
    if split == "even" or (split == "geometric" and ratio == 1.0):
        sizes = [num_classes // k] * k
        for i in range(num_classes % k):
            sizes[i] += 1
        return sizes
    raw = [num_classes * ratio**i / sum(ratio**j for j in range(k)) for i in range(k)]
    sizes = [math.floor(r) for r in raw]
    left = num_classes - sum(sizes)
    frac = sorted(range(k), key=lambda i: (-(raw[i] - sizes[i]), i))
    for i in frac[:left]:
        sizes[i] += 1
    for i in range(k):
        if sizes[i] == 0:
            donor = max(range(k), key=lambda j: (sizes[j], j))
            sizes[donor] -= 1
            sizes[i] = 1
    return sizes


def ref_order(s_row: Tensor, t_row: Tensor, ranking: str) -> list[int]:
    classes = list(range(s_row.numel()))
    if ranking == "none":
        return classes
    if ranking == "abs_gap":
        key = [abs(float(t_row[c]) - float(s_row[c])) for c in classes]
    else:
        key = [float(t_row[c]) for c in classes]
    return sorted(classes, key=lambda c: -key[c])  # python's sort is stable


def ref_softmax(z: Tensor) -> Tensor:
    e = torch.exp(z - z.max())
    return e / e.sum()


def ref_group_term(s_g: Tensor, t_g: Tensor, temperature: float, weighting: str, detach: bool):
    p = ref_softmax(t_g / temperature)
    q = ref_softmax(s_g / temperature)
    kl = (p * (torch.log(p) - torch.log(q))).sum()
    if s_g.numel() == 1:
        return kl * 0.0
    if weighting == "none":
        w = torch.ones((), dtype=s_g.dtype)
    else:
        other = q if weighting == "paper" else torch.log(q)
        w = 1 - (p * other).sum() / (p.norm() * other.norm())
    if detach:
        w = w.detach()
    return w * temperature**2 * kl


def ref_pcd_loss(
    s: Tensor,
    t: Tensor,
    *,
    temperature: float,
    group_counts: list[int],
    ranking: str = "abs_gap",
    split: str = "even",
    weighting: str = "paper",
    standardize: bool = False,
    detach_weight: bool = False,
    stage_norm: bool = False,
    split_ratio: float = 2.0,
) -> Tensor:
    s = s.double()
    t = t.double()
    if standardize:
        s, t = ref_standardize(s), ref_standardize(t)
    per_sample = []
    for b in range(s.shape[0]):
        order = ref_order(s[b].detach(), t[b].detach(), ranking)
        total = torch.zeros((), dtype=torch.float64)
        for k in group_counts:
            start = 0
            for size in ref_sizes(s.shape[1], k, split, split_ratio):
                idx = order[start : start + size]
                start += size
                total = total + ref_group_term(
                    s[b, idx], t[b, idx], temperature, weighting, detach_weight
                )
        if stage_norm:
            total = total / len(group_counts)
        per_sample.append(total)
    return torch.stack(per_sample).mean()


def ref_kd_loss(s: Tensor, t: Tensor, temperature: float) -> Tensor:
    out = []
    for b in range(s.shape[0]):
        p = ref_softmax(t[b].double() / temperature)
        q = ref_softmax(s[b].double() / temperature)
        out.append((p * (p.log() - q.log())).sum() * temperature**2)
    return torch.stack(out).mean()
