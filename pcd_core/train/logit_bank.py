"""A teacher-logit bank: the teacher's logits for every (data seed, epoch) batch, computed once.

Batches are a deterministic function of (data seed, epoch), so every trial of a study sees the
same augmented images, and the frozen teacher's logits for them can be stored once (fp16) and
reused by every trial instead of running the teacher in each. Files are keyed by the teacher's
content hash and a key of the data pipeline, on local or shared storage.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import Tensor, nn

from pcd_core.data import DeviceLoader
from pcd_core.train.checkpoint import atomic_save


def data_key(**fields: object) -> str:
    """A short stable key of everything that decides the batches (data set, split, seed, ...)."""
    text = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class LogitBank:
    """``root/<teacher hash>-<data key>/epoch_<e>.pt``: fp16 [dataset size, classes]."""

    def __init__(self, root: Path, teacher_hash: str, key: str) -> None:
        self.folder = Path(root) / f"{teacher_hash[:16]}-{key}"

    def path(self, epoch: int) -> Path:
        return self.folder / f"epoch_{epoch:04d}.pt"

    def has(self, epoch: int) -> bool:
        return self.path(epoch).is_file()

    @torch.no_grad()
    def build(
        self, epoch: int, teacher: nn.Module, loader: DeviceLoader, *, size: int, amp: bool = False
    ) -> Tensor:
        """Run the teacher over the batches of ``epoch`` once and store its logits."""
        teacher.eval()
        out: Tensor | None = None
        for batch in loader.epoch(epoch):
            with torch.autocast(batch.images.device.type, dtype=torch.bfloat16, enabled=amp):
                logits = teacher(batch.images)
            if out is None:
                out = torch.zeros(
                    (size, logits.shape[1]), dtype=torch.float16, device=logits.device
                )
            out[batch.index] = logits.to(torch.float16)
        assert out is not None, "empty loader"
        atomic_save(out.cpu(), self.path(epoch))
        return out

    def load(self, epoch: int, device: torch.device) -> Tensor:
        return torch.load(self.path(epoch), map_location=device, weights_only=True)

    def get(
        self, epoch: int, teacher: nn.Module, loader: DeviceLoader, *, size: int, amp: bool = False
    ) -> Tensor:
        """The epoch's logits: from the bank, or computed now and stored."""
        if self.has(epoch):
            return self.load(epoch, loader.device)
        return self.build(epoch, teacher, loader, size=size, amp=amp)
