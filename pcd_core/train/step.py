"""The training step and the epoch loop around it: the one copy the trainer, the GPU check and
the benches all run.

The step keeps the CUDA path fast: the forward runs under bf16 autocast (``amp``), inputs and
weights are channels_last when the loader and the models were set up so, and nothing inside a
step waits for the device: the loss terms and the correct count are summed into device tensors
(:class:`EpochTally`) and read once, at the end of the epoch.
"""

from __future__ import annotations

import functools
import math
import operator

import torch
from torch import Tensor

from pcd_core.data import Batch, DeviceLoader, StreamingLoader
from pcd_core.train.distiller import Distiller


class NonFiniteLoss(RuntimeError):
    """The training loss (or the validation loss) became NaN or infinite: the run diverged.
    Raised before the epoch is checkpointed or reported, so the last checkpoint is sound."""


class EpochTally:
    """An epoch's per-step metrics, accumulated on the device (adding is not a host sync)."""

    def __init__(self, device: torch.device) -> None:
        self.sums: dict[str, Tensor] = {}  # each loss term x batch size
        self.totals: list[Tensor] = []  # each step's loss: read only once known non-finite
        self.correct = torch.zeros((), device=device)
        self.seen = 0

    def add(self, losses: dict[str, Tensor], total: Tensor, logits: Tensor, labels: Tensor) -> None:
        n = labels.shape[0]
        self.seen += n
        self.totals.append(total.detach())
        for name, value in losses.items():
            term = value.detach() * n
            self.sums[name] = self.sums[name] + term if name in self.sums else term
        self.correct += (logits.detach().argmax(1) == labels).sum()

    def result(self, epoch: int) -> tuple[dict[str, float], float]:
        """(mean loss terms with their ``total``, train top-1 %): the epoch's host syncs.
        NonFiniteLoss if the epoch's loss is NaN or infinite, naming the first bad step."""
        means = {name: v.item() / max(self.seen, 1) for name, v in self.sums.items()}
        means["total"] = sum(means.values())
        if not math.isfinite(means["total"]):
            step = _first_non_finite(self.totals)
            raise NonFiniteLoss(_non_finite_message(means, epoch, step))
        return means, self.correct.item() / max(self.seen, 1) * 100


def train_step(
    distiller: Distiller,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    tally: EpochTally,
    *,
    epoch: int,
    total_epochs: int,
    amp: bool,
    bank_logits: Tensor | None = None,
) -> None:
    """One optimisation step on ``batch``, its metrics added to ``tally``; no host sync.

    ``bank_logits``: the teacher's logits of every training image for this epoch (a logit
    bank, indexed by ``batch.index``); without it the distiller's teacher computes them.
    """
    teacher_logits = None if bank_logits is None else bank_logits[batch.index].float()
    with torch.autocast(batch.images.device.type, dtype=torch.bfloat16, enabled=amp):
        logits, losses = distiller.forward_train(
            batch.images,
            batch.labels,
            epoch=epoch,
            total_epochs=total_epochs,
            teacher_logits=teacher_logits,
        )
    # reduce, not sum(): sum() starts from 0 and so launches one more add every step
    loss: Tensor = functools.reduce(operator.add, losses.values())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    tally.add(losses, loss, logits, batch.labels)


def train_epoch(
    distiller: Distiller,
    optimizer: torch.optim.Optimizer,
    loader: DeviceLoader | StreamingLoader,
    *,
    epoch: int,
    total_epochs: int,
    amp: bool,
    bank_logits: Tensor | None = None,
) -> tuple[dict[str, float], float]:
    """One pass of :func:`train_step` over ``loader``'s batches of ``epoch``: the mean loss
    terms (and their ``total``) and the train top-1 %, read from the device once."""
    distiller.train()
    tally = EpochTally(loader.device)
    for batch in loader.epoch(epoch):
        train_step(
            distiller,
            optimizer,
            batch,
            tally,
            epoch=epoch,
            total_epochs=total_epochs,
            amp=amp,
            bank_logits=bank_logits,
        )
    return tally.result(epoch)


def _first_non_finite(totals: list[Tensor]) -> int:
    """The 1-based step of the first non-finite loss of an epoch (0: none). One transfer,
    made only once an epoch's loss is known to be non-finite."""
    if not totals:
        return 0
    bad = (~torch.isfinite(torch.stack(totals).float())).nonzero()
    return int(bad[0, 0]) + 1 if len(bad) else 0


def _non_finite_message(losses: dict[str, float], epoch: int, step: int) -> str:
    """For example "loss is nan at epoch 3, step 17 (ce=nan, kd=0.41)"."""
    terms = ", ".join(f"{k}={v:.4g}" for k, v in losses.items() if k != "total")
    where = f"epoch {epoch}, step {step}" if step else f"epoch {epoch}"
    return f"loss is {losses['total']} at {where} ({terms})"
