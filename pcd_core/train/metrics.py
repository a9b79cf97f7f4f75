"""Evaluation: top-1/top-5, per-class accuracy and accuracy on the teacher's hard classes."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pcd_core.data import Batch


@torch.no_grad()
def predict(
    model: nn.Module, batches: Iterable[Batch], *, amp: bool = False
) -> tuple[Tensor, Tensor]:
    """fp32 logits and labels of every batch, concatenated on the model's device."""
    was_training = model.training
    model.eval()
    logits, labels = [], []
    for batch in batches:
        device_type = batch.images.device.type
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=amp):
            out = model(batch.images)
        logits.append(out.float())
        labels.append(batch.labels)
    model.train(was_training)
    return torch.cat(logits), torch.cat(labels)


def hard_classes(
    teacher_logits: Tensor, labels: Tensor, num_classes: int, fraction: float
) -> Tensor:
    """The ``fraction`` of classes (at least one) on which the teacher is least confident:
    lowest mean probability of the true class over the samples of each class."""
    prob_true = F.softmax(teacher_logits.float(), dim=1).gather(1, labels[:, None]).squeeze(1)
    sums = torch.zeros(num_classes, device=labels.device).index_add_(0, labels, prob_true)
    counts = torch.bincount(labels, minlength=num_classes).clamp_min(1)
    confidence = sums / counts
    k = max(1, round(fraction * num_classes))
    return torch.sort(confidence, stable=True).indices[:k].sort().values


def classification_metrics(
    logits: Tensor, labels: Tensor, num_classes: int, hard: Tensor | None = None
) -> dict[str, object]:
    """top1/top5 (%), mean CE loss, per-class accuracy (%) and, given the hard classes,
    the accuracy over the samples of those classes (%)."""
    n = max(1, labels.numel())
    correct = logits.argmax(1) == labels
    k = min(5, num_classes)
    top5 = (logits.topk(k, dim=1).indices == labels[:, None]).any(1)
    per_class_correct = torch.zeros(num_classes, device=labels.device).index_add_(
        0, labels, correct.float()
    )
    per_class_count = torch.bincount(labels, minlength=num_classes).float()
    per_class = torch.where(
        per_class_count > 0, per_class_correct / per_class_count.clamp_min(1) * 100, float("nan")
    )
    out: dict[str, object] = {
        "top1": correct.float().sum().item() / n * 100,
        "top5": top5.float().sum().item() / n * 100,
        "loss": F.cross_entropy(logits, labels).item() if labels.numel() else float("nan"),
        "per_class": [round(v, 4) for v in per_class.tolist()],
    }
    if hard is not None:
        mask = torch.isin(labels, hard)
        out["hard_top1"] = (correct & mask).float().sum().item() / max(1, mask.sum().item()) * 100
    return out
