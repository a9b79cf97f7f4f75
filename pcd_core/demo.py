"""`make demo`: train a small digits teacher, distil a student with ce, kd and pcd, compare.

Runs offline on the CPU in well under a minute (scikit-learn's 8x8 digits ship with it).
"""

from __future__ import annotations

import time

import torch
from rich.console import Console
from rich.table import Table
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from pcd_core.methods import build_method
from pcd_core.models import build_model

console = Console()


def _data(seed: int = 0):
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x, dtype=torch.float32).view(-1, 1, 8, 8) / 16.0
    y = torch.tensor(y)
    idx = list(range(len(y)))
    train_val, test = train_test_split(idx, test_size=0.2, random_state=seed, stratify=y)
    train, val = train_test_split(
        train_val, test_size=0.1, random_state=seed, stratify=y[train_val]
    )
    return {k: (x[v], y[v]) for k, v in {"train": train, "val": val, "test": test}.items()}


def _accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item() * 100


def _fit(model, data, method_name, teacher=None, epochs=40, seed=0) -> tuple[float, float]:
    torch.manual_seed(seed)
    method = build_method(method_name, {"warmup": 5} if method_name == "pcd" else {})
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    x, y = data["train"]
    gen = torch.Generator().manual_seed(seed)
    best_val, test_at_best = -1.0, 0.0
    for epoch in range(1, epochs + 1):
        model.train()
        for batch in torch.randperm(len(y), generator=gen).split(64):
            logits = model(x[batch])
            t_logits = None
            if teacher is not None:
                with torch.no_grad():
                    t_logits = teacher(x[batch])
            losses = method.losses(logits, t_logits, y[batch], epoch=epoch, total_epochs=epochs)
            opt.zero_grad(set_to_none=True)
            sum(losses.values()).backward()
            opt.step()
        val = _accuracy(model, *data["val"])
        if val > best_val:  # model selection on val; test is read at the chosen epoch only
            best_val, test_at_best = val, _accuracy(model, *data["test"])
    return best_val, test_at_best


def main() -> None:
    torch.set_num_threads(1)
    data = _data()
    start = time.perf_counter()
    torch.manual_seed(0)
    teacher = build_model("cnn_small", num_classes=10, in_channels=1, image_size=8)
    t_val, t_test = _fit(teacher, data, "ce", epochs=30)
    teacher.eval().requires_grad_(False)
    console.print(f"teacher cnn_small: val {t_val:.1f}%  test {t_test:.1f}%")
    table = Table(title="digits: mlp_32 student, 40 epochs, 3 seeds (best-on-val epoch)")
    for col in ("method", "val top-1 %", "test top-1 %"):
        table.add_column(col, justify="right")
    for method in ("ce", "kd", "pcd"):
        vals, tests = [], []
        for seed in range(3):
            torch.manual_seed(seed)
            student = build_model("mlp_32", num_classes=10, in_channels=1, image_size=8)
            v, t = _fit(
                student, data, method, teacher=teacher if method != "ce" else None, seed=seed
            )
            vals.append(v)
            tests.append(t)
        mv, mt = torch.tensor(vals), torch.tensor(tests)
        table.add_row(
            method, f"{mv.mean():.1f} ± {mv.std():.1f}", f"{mt.mean():.1f} ± {mt.std():.1f}"
        )
    console.print(table)
    console.print(f"[dim]done in {time.perf_counter() - start:.0f} s[/dim]")


if __name__ == "__main__":
    main()
