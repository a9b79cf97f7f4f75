"""`make demo`: train a digits teacher, distil an MLP student with ce, kd, dkd and pcd.

Runs offline on the CPU in about a minute (scikit-learn's 8x8 digits ship with it). Model
selection is on val; test is read only for the selected weights.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console

from pcd_core.compare import compare_methods, summary_table, train_teacher
from pcd_core.train import DataConfig, load_teacher

console = Console()

METHODS = [("ce", {}), ("kd", {}), ("dkd", {}), ("pcd", {})]
SEEDS = [0, 1, 2]


def main() -> None:
    torch.set_num_threads(1)
    start = time.perf_counter()
    data = DataConfig(name="digits")
    with tempfile.TemporaryDirectory(prefix="pcd-demo-") as tmp:
        root = Path(tmp)
        console.print("[bold]training the teacher[/bold] (cnn_small, 20 epochs) ...")
        artifact = train_teacher(root / "teacher", arch="cnn_small", data=data, epochs=20)
        _, info = load_teacher(artifact)
        console.print(
            f"teacher cnn_small: val {info.val_top1:.1f}%  test {info.test_top1:.1f}%  "
            f"hash {info.content_hash[:12]}"
        )
        summaries = compare_methods(
            root / "students",
            teacher=artifact,
            student="mlp_32",
            methods=METHODS,
            seeds=SEEDS,
            data=data,
            epochs=30,
            lr=0.01,
            on_run=lambda label, seed, val: console.print(
                f"  {label:4s} seed {seed}: best val top-1 {val:.1f}%"
            ),
        )
    table = summary_table(
        summaries,
        f"digits, mlp_32 student, 30 epochs, lr 0.01, {len(SEEDS)} seeds (mean ± std)",
    )
    console.print(table)
    console.print(f"[dim]done in {time.perf_counter() - start:.0f} s[/dim]")


if __name__ == "__main__":
    main()
