"""Speed of the PCD loss next to KD and a naive masked-loop PCD, measured side by side.

For every (B, C): forward+backward medians (torch.utils.benchmark) of pcd_loss joint S=3 and
S=5 as users call it (on CUDA: the fused Triton kernel), the same on its vectorised path
(``PCD_FUSED=0``), kd_loss and the naive reference, and their ratios to kd_loss from the same
run; then the number of operators one pcd_loss call runs for S = 1, 3, 6 (torch.profiler).

    python bench/loss_bench.py [--device cuda] [--batch 256 --classes 100] [--min-run-time 0.3]
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
import typer
from rich.console import Console
from rich.table import Table
from torch.utils import benchmark

from pcd_core.losses import JointSchedule, fused_pcd, group_sizes, kd_loss, pcd_loss

app = typer.Typer(add_completion=False)
console = Console()


def naive_masked_pcd(
    student: torch.Tensor, teacher: torch.Tensor, *, temperature: float, group_counts: list[int]
) -> torch.Tensor:
    """PCD with the structure of the authors' code: a Python loop over stages and groups, one
    masked full-width softmax per group, every stage of both passes computed (block size fixed
    so that groups are C/k classes, as the paper describes)."""
    s, t = student.float(), teacher.float()
    batch, num_classes = s.shape
    with torch.no_grad():
        order = torch.sort((t - s).abs(), dim=1, descending=True, stable=True).indices
    total = s.new_zeros(batch)
    for k in group_counts:
        start = 0
        for size in group_sizes(num_classes, k):
            cols = order[:, start : start + size]
            start += size
            mask = torch.zeros_like(s, dtype=torch.bool).scatter_(1, cols, True)
            neg = torch.finfo(s.dtype).min
            log_q = torch.log_softmax((s / temperature).masked_fill(~mask, neg), dim=1)
            log_p = torch.log_softmax((t / temperature).masked_fill(~mask, neg), dim=1)
            p, q = log_p.exp(), log_q.exp()
            kl = torch.where(mask, p * (log_p - log_q), 0.0).sum(1)
            cos = torch.nn.functional.cosine_similarity(p * mask, q * mask, dim=1)
            total = total + (1 - cos) * kl * (size > 1)
    return total.mean() * temperature**2


def vectorised_pcd_loss(student: torch.Tensor, teacher: torch.Tensor, **kw) -> torch.Tensor:
    """pcd_loss on its vectorised path (the fused kernel off for the call)."""
    with fused_pcd.vectorised_path():
        return pcd_loss(student, teacher, **kw)


def _fwd_bwd(fn: Callable[..., torch.Tensor], s: torch.Tensor, t: torch.Tensor, **kw) -> None:
    s.grad = None
    fn(s, t, **kw).backward()


def _candidates(num_classes: int) -> dict[str, tuple[Callable, dict]]:
    out: dict[str, tuple[Callable, dict]] = {"kd_loss": (kd_loss, {"temperature": 4.0})}
    for stages in (3, 5):
        if stages <= num_classes:
            counts = JointSchedule(stages).group_counts(1)
            kw = {"temperature": 4.0, "group_counts": counts}
            out[f"pcd joint S={stages}"] = (pcd_loss, kw)
            out[f"pcd joint S={stages} vectorised"] = (vectorised_pcd_loss, kw)
    if 5 <= num_classes:
        counts = JointSchedule(5).group_counts(1)
        out["naive S=5"] = (naive_masked_pcd, {"temperature": 4.0, "group_counts": counts})
    return out


def _operator_counts(device: torch.device) -> Table:
    """Top-level aten operators (and, on CUDA, GPU kernels) per call, for both paths."""
    from torch.profiler import ProfilerActivity, profile

    on_cuda = device.type == "cuda"
    table = Table(title=f"operators per pcd_loss call (B=256, C=100, {device.type})")
    columns = ["S", "group_counts", "path", "aten ops fwd", "aten ops fwd+bwd"]
    for col in columns + (["CUDA kernels fwd+bwd"] if on_cuda else []):
        table.add_column(col, justify="right")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_cuda else [])
    s = torch.randn(256, 100, device=device, requires_grad=True)
    t = torch.randn(256, 100, device=device)
    for stages, (path, fn) in itertools.product(
        (1, 3, 6), (("pcd_loss", pcd_loss), ("vectorised", vectorised_pcd_loss))
    ):
        counts = JointSchedule(stages).group_counts(1)
        fn(s, t, temperature=4.0, group_counts=counts).backward()  # layouts, compiled kernels
        row = []
        for backward in (False, True):
            s.grad = None  # no accumulation operator in the count
            with profile(activities=activities) as prof:
                loss = fn(s, t, temperature=4.0, group_counts=counts)
                if backward:
                    loss.backward()
                if on_cuda:
                    torch.cuda.synchronize(device)
            row.append(_top_level_aten_ops(prof.events()))
        if on_cuda:
            row.append(sum(1 for e in prof.events() if e.device_type.name == "CUDA"))
        table.add_row(str(stages), str(counts), path, *map(str, row))
    return table


def _top_level_aten_ops(events) -> int:
    """aten operators not nested in another (an operator's inner calls count once)."""
    return sum(
        1
        for e in events
        if e.name.startswith("aten::")
        and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::"))
    )


@app.command()
def main(
    device: str = typer.Option("cuda" if torch.cuda.is_available() else "cpu"),
    batch: list[int] = typer.Option([64, 256, 1024], help="batch sizes"),
    classes: list[int] = typer.Option([10, 100, 1000], help="class counts"),
    min_run_time: float = typer.Option(0.3, help="seconds of timing per measurement"),
) -> None:
    """Print the loss benchmark tables."""
    dev = torch.device(device)
    name = (
        torch.cuda.get_device_name(dev)
        if dev.type == "cuda"
        else f"CPU, {torch.get_num_threads()} threads"
    )
    probe = torch.zeros(2, max(classes), device=dev)
    path = "fused kernel" if fused_pcd.serves(probe, probe, [5]) else "vectorised"
    table = Table(
        title=f"forward+backward median, ms ({name}; ratio to kd_loss in brackets; "
        f"pcd joint = pcd_loss as called: {path})"
    )
    table.add_column("B", justify="right")
    table.add_column("C", justify="right")
    names = list(_candidates(max(classes)))
    for n in names:
        table.add_column(n, justify="right")
    table.add_column("naive/pcd S=5", justify="right")
    for b in batch:
        for c in classes:
            gen = torch.Generator().manual_seed(0)
            s = (torch.randn(b, c, generator=gen) * 3).to(dev).requires_grad_(True)
            t = (torch.randn(b, c, generator=gen) * 3).to(dev)
            medians: dict[str, float] = {}
            for label, (fn, kw) in _candidates(c).items():
                timer = benchmark.Timer(
                    stmt="f(fn, s, t, **kw)",
                    globals={"f": _fwd_bwd, "fn": fn, "s": s, "t": t, "kw": kw},
                )
                medians[label] = timer.blocked_autorange(min_run_time=min_run_time).median * 1e3
            kd = medians["kd_loss"]
            cells = [
                f"{medians[n]:.3f} ({medians[n] / kd:.1f}x)" if n in medians else "-" for n in names
            ]
            speedup = (
                f"{medians['naive S=5'] / medians['pcd joint S=5']:.1f}x"
                if "naive S=5" in medians and "pcd joint S=5" in medians
                else "-"
            )
            table.add_row(str(b), str(c), *cells, speedup)
            console.print(f"[dim]B={b} C={c} done[/dim]")
    console.print(table)
    console.print(_operator_counts(dev))


if __name__ == "__main__":
    app()
