"""Digits comparison over seeds: ce, kd, dkd and pcd at their defaults, mean ± std.

    python bench/digits_compare.py [--seeds 5] [--epochs 30] [--student mlp_32] [--lr 0.01]

All methods share the data batches of each epoch (common random numbers) and the teacher.
Selection is on val; test is read for the best-on-val weights and for the last epoch.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
import typer
from rich.console import Console

from pcd_core.compare import compare_methods, summary_table, train_teacher
from pcd_core.train import DataConfig, load_teacher

app = typer.Typer(add_completion=False)
console = Console()


@app.command()
def main(
    seeds: int = typer.Option(5),
    epochs: int = typer.Option(30),
    student: str = typer.Option("mlp_32"),
    teacher_arch: str = typer.Option("cnn_small"),
    teacher_epochs: int = typer.Option(20),
    lr: float = typer.Option(0.01, help="student lr (0.05 diverges for dkd/pcd with an MLP)"),
    threads: int = typer.Option(1),
) -> None:
    torch.set_num_threads(threads)
    data = DataConfig(name="digits")
    with tempfile.TemporaryDirectory(prefix="pcd-digits-") as tmp:
        artifact = train_teacher(
            Path(tmp) / "teacher", arch=teacher_arch, data=data, epochs=teacher_epochs
        )
        _, info = load_teacher(artifact)
        summaries = compare_methods(
            Path(tmp) / "students",
            teacher=artifact,
            student=student,
            methods=[("ce", {}), ("kd", {}), ("dkd", {}), ("pcd", {})],
            seeds=list(range(seeds)),
            data=data,
            epochs=epochs,
            lr=lr,
        )
    table = summary_table(
        summaries,
        f"digits: {teacher_arch} teacher (test {info.test_top1:.1f}%) -> {student}, "
        f"{epochs} epochs, lr {lr}, {seeds} seeds, mean ± std",
    )
    console.print(table)


if __name__ == "__main__":
    app()
