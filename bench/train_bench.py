"""Cost of a distillation training step per method, and what the teacher-logit bank saves.

1. Seconds per training step (pcd_core.train.train_step: student forward+backward+SGD,
   teacher forward) for
   resnet32x4 -> resnet8x4 on 32x32x3 batches with ce, kd, dkd, pcd S=3 and S=5, measured
   side by side (methods interleaved round-robin, medians), as ratios to ce.
2. The epoch time of a kd run with and without a prefilled teacher-logit bank.

    python bench/train_bench.py [--device cuda] [--batch 64] [--batch 512] [--rounds 5]
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch
import typer
from rich.console import Console
from rich.table import Table

from pcd_core.data import Batch, DeviceLoader, random_image_data
from pcd_core.methods import build_method
from pcd_core.models import build_model
from pcd_core.train import Distiller, EpochTally, LogitBank, train_epoch, train_step

app = typer.Typer(add_completion=False)
console = Console()

METHODS = {
    "ce": ("ce", {}),
    "kd": ("kd", {}),
    "dkd": ("dkd", {"warmup": 0}),
    "pcd S=3": ("pcd", {"stages": 3, "warmup": 0}),
    "pcd S=5": ("pcd", {"stages": 5, "warmup": 0}),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step_times(device, batch, rounds, steps, amp) -> dict[str, list[float]]:
    """Seconds per pcd_core.train.train_step of each method, interleaved round-robin."""
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    teacher = build_model("resnet32x4", 100).to(device, memory_format=fmt)
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, 32, 32, generator=gen).to(device, memory_format=fmt)
    labels = torch.randint(0, 100, (batch,), generator=gen).to(device)
    one_batch = Batch(images, labels, torch.arange(batch, device=device), step=0)
    runs = {}
    for label, (name, options) in METHODS.items():
        torch.manual_seed(0)
        student = build_model("resnet8x4", 100).to(device, memory_format=fmt)
        method = build_method(name, options)
        distiller = Distiller(student, teacher if method.needs_teacher else None, method).train()
        opt = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9)
        runs[label] = (distiller, opt, EpochTally(device))

    def step(distiller, opt, tally):
        train_step(distiller, opt, one_batch, tally, epoch=5, total_epochs=10, amp=amp)

    for run in runs.values():  # warm-up
        step(*run)
    times: dict[str, list[float]] = {label: [] for label in runs}
    for _ in range(rounds):
        for label, run in runs.items():
            _sync(device)
            start = time.perf_counter()
            for _ in range(steps):
                step(*run)
            _sync(device)
            times[label].append((time.perf_counter() - start) / steps)
    return times


def _bank_epoch(device, batch, n_images, amp) -> tuple[float, float]:
    """Seconds of a kd train_epoch with the teacher's forward, and with a prefilled bank."""
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    data = random_image_data(n_images)
    loader = DeviceLoader(
        data,
        None,
        batch,
        shuffle=True,
        augment=True,
        seed=0,
        device=device,
        channels_last=device.type == "cuda",
    )
    teacher = build_model("resnet32x4", 100).to(device, memory_format=fmt).eval()
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        bank = LogitBank(Path(tmp), "bench", "random")
        bank.build(1, teacher, loader, size=n_images, amp=amp)  # prefill, as a study does once
        for use_bank in (False, True, False, True):
            torch.manual_seed(0)
            student = build_model("resnet8x4", 100).to(device, memory_format=fmt)
            distiller = Distiller(student, teacher, build_method("kd"))
            opt = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9)
            _sync(device)
            start = time.perf_counter()
            logits_bank = bank.load(1, device) if use_bank else None
            train_epoch(
                distiller, opt, loader, epoch=1, total_epochs=1, amp=amp, bank_logits=logits_bank
            )
            _sync(device)
            out.setdefault(use_bank, []).append(time.perf_counter() - start)
    return min(out[False]), min(out[True])


@app.command()
def main(
    device: str = typer.Option("cuda" if torch.cuda.is_available() else "cpu"),
    batch: list[int] = typer.Option([64], help="batch sizes"),
    rounds: int = typer.Option(3, help="round-robin rounds (median over rounds)"),
    steps: int = typer.Option(3, help="steps per method per round"),
    bank_images: int = typer.Option(1024, help="images in the logit-bank epoch"),
    amp: bool = typer.Option(None, help="bf16 autocast (default: on for CUDA)"),
) -> None:
    """Print the training-step and logit-bank tables."""
    dev = torch.device(device)
    use_amp = dev.type == "cuda" if amp is None else amp
    name = (
        torch.cuda.get_device_name(dev)
        if dev.type == "cuda"
        else (f"CPU, {torch.get_num_threads()} threads")
    )
    for b in batch:
        times = _step_times(dev, b, rounds, steps, use_amp)
        ce = statistics.median(times["ce"])
        table = Table(
            title=f"resnet32x4 -> resnet8x4, batch {b}, {name}, bf16={use_amp}: "
            f"median of {rounds} rounds x {steps} steps"
        )
        for col in ("method", "s/step", "images/s", "ratio to ce", "ratio to kd"):
            table.add_column(col, justify="right")
        kd = statistics.median(times["kd"])
        for label, ts in times.items():
            med = statistics.median(ts)
            table.add_row(
                label, f"{med:.4f}", f"{b / med:.0f}", f"{med / ce:.3f}", f"{med / kd:.3f}"
            )
        console.print(table)
    without, with_bank = _bank_epoch(dev, batch[0], bank_images, use_amp)
    table = Table(title=f"kd epoch of {bank_images} images, batch {batch[0]} (best of 2)")
    for col in ("teacher logits", "seconds", "ratio"):
        table.add_column(col, justify="right")
    table.add_row("teacher forward each step", f"{without:.2f}", "1.000")
    table.add_row("prefilled logit bank", f"{with_bank:.2f}", f"{with_bank / without:.3f}")
    console.print(table)


if __name__ == "__main__":
    app()
