"""The distillation module: a trainable student beside a teacher that is frozen by construction."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pcd_core.methods import Method


class Distiller(nn.Module):
    """mdistiller's contract: ``forward_train`` returns the student logits and a dict of named,
    weighted losses. The teacher never trains: its parameters do not require grad, it stays
    in eval mode whatever ``train()`` is called with, and it runs under ``no_grad``."""

    def __init__(self, student: nn.Module, teacher: nn.Module | None, method: Method) -> None:
        super().__init__()
        if method.needs_teacher and teacher is None:
            raise ValueError(f"method {method.name!r} needs a teacher")
        self.student = student
        self.method = method
        # held outside the module tree so that optimisers and state_dicts never see it
        self._teacher = [teacher.eval().requires_grad_(False)] if teacher is not None else []

    @property
    def teacher(self) -> nn.Module | None:
        return self._teacher[0] if self._teacher else None

    def train(self, mode: bool = True) -> Distiller:
        self.student.train(mode)
        if self.teacher is not None:
            self.teacher.eval()
        self.training = mode
        return self

    def teacher_logits(self, images: Tensor) -> Tensor | None:
        if self.teacher is None:
            return None
        with torch.no_grad():
            return self.teacher(images)

    def forward_train(
        self,
        images: Tensor,
        target: Tensor,
        *,
        epoch: int,
        total_epochs: int,
        teacher_logits: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Student logits and the method's named losses; ``teacher_logits`` may come from a
        logit bank, else the teacher computes them."""
        logits = self.student(images)
        if teacher_logits is None and self.method.needs_teacher:
            teacher_logits = self.teacher_logits(images)
        losses = self.method.losses(
            logits, teacher_logits, target, epoch=epoch, total_epochs=total_epochs
        )
        return logits, losses

    def forward(self, images: Tensor) -> Tensor:
        return self.student(images)
