"""Search strategies on digits at the same budget: best val accuracy against trial-epochs.

tpe+asha, random+asha, random without early stopping, and grid, over a discrete PCD space
(grid = the true optimum of the space), 3 seeds each (grid once: it is exhaustive). Every
study runs through the product's runner (Ray Tune + Optuna + MLflow) on a local Ray. Also
measures the scheduling overhead per trial (trial wall time minus time inside the
trainable) and the peak memory of the whole study (driver, Ray and trials).

    python bench/search_bench.py [--seeds 3] [--max-epochs 8] [--out bench/results]
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import typer
from ray import tune
from rich.console import Console
from rich.table import Table

from pcd_core.compare import mean_std
from pcd_core.run_dir import RunDir
from pcd_core.train import DataConfig, TrainConfig, train
from search_spaces import parse_spec
from service.runner.study import run_study
from service.settings import RunnerSettings

app = typer.Typer(add_completion=False)
console = Console()

SPACE = {
    "stages": {"type": "int", "low": 1, "high": 4},
    "temperature": {"type": "categorical", "choices": [1.0, 2.0, 4.0, 8.0]},
    "alpha": {"type": "categorical", "choices": [0.3, 1.0, 3.0]},
    "warmup": {"type": "fixed", "value": 2},
}
GRID = 4 * 4 * 3


class OverheadProbe(tune.Callback):
    """Driver-side wall time of each trial, and the time its trainable reported inside."""

    def __init__(self) -> None:
        self.start: dict[str, float] = {}
        self.inside: dict[str, float] = {}
        self.wall: dict[str, float] = {}

    def on_trial_start(self, iteration, trials, trial, **info):
        self.start[trial.trial_id] = time.monotonic()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.inside[trial.trial_id] = float(result.get("time_total_s", 0.0))

    def on_trial_complete(self, iteration, trials, trial, **info):
        if trial.trial_id in self.start:
            self.wall[trial.trial_id] = time.monotonic() - self.start[trial.trial_id]

    def overheads(self) -> list[float]:
        return [self.wall[t] - self.inside.get(t, 0.0) for t in self.wall]


class MemoryProbe:
    """Peak summed memory of this process and all its descendants (Ray included)."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.peak_rss = 0
        self.peak_pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            rss = pss = 0
            for p in [me, *me.children(recursive=True)]:
                try:
                    info = p.memory_full_info()
                    rss += info.rss
                    pss += getattr(info, "pss", info.rss)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
            self._stop.wait(self.interval)

    def __enter__(self) -> MemoryProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def _curve(trials, budget: int) -> list[tuple[int, float]]:
    """Best-so-far objective against cumulative trial-epochs, in report order."""
    events = sorted((t, e, v) for row in trials for t, e, v in row.history)
    out, best, spent = [], float("-inf"), 0
    for _, _, value in events:
        spent += 1
        best = max(best, value)
        if spent > budget:
            break
        out.append((spent, best))
    return out


def _spec(name: str, sampler: str, scheduler: str, trials: int, max_epochs: int, seed: int):
    return parse_spec(
        {
            "name": name,
            "data": {"name": "digits", "val_fraction": 0.2, "seed": 0},
            "teacher": {"checkpoint": RunDir.TEACHER},  # in the teacher's run folder
            "student": "mlp_32",
            "method": "pcd",
            # every strategy trains with the same model seed: only the search differs
            "training": {"lr": 0.01, "seed": 0},
            "space": SPACE,
            "budget": {"trials": trials, "max_epochs": max_epochs},
            "scheduler": {"type": scheduler, "grace_period": 1, "reduction_factor": 2},
            "sampler": {"type": sampler},
            "concurrency": 2,
            "seed": seed,
            "promotion": {"seeds": 0},
        }
    )


@app.command()
def main(
    seeds: int = typer.Option(3),
    max_epochs: int = typer.Option(8),
    out: Path = typer.Option(Path("bench/results")),
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    work = out / "search_runs"
    budget = GRID * max_epochs
    teacher_dir = work / "teacher"
    if not RunDir(teacher_dir).teacher.is_file():
        train(
            TrainConfig(arch="cnn_small", epochs=15, data=DataConfig(val_fraction=0.2)), teacher_dir
        )
    settings = RunnerSettings(teacher_root=teacher_dir, num_cpus=2)
    strategies = {
        "grid": ("grid", "none", GRID, [0]),
        "tpe+asha": ("tpe", "asha", GRID * 2, list(range(seeds))),
        "random+asha": ("random", "asha", GRID * 2, list(range(seeds))),
        "random": ("random", "none", GRID, list(range(seeds))),
    }
    curves: dict[str, list[list[tuple[int, float]]]] = {}
    overhead: list[float] = []
    peaks: list[tuple[int, int]] = []
    for label, (sampler, scheduler, trials, seed_list) in strategies.items():
        for seed in seed_list:
            name = f"{label.replace('+', '-')}-s{seed}"
            spec = _spec(name, sampler, scheduler, trials, max_epochs, seed)
            probe = OverheadProbe()
            started = time.monotonic()
            with MemoryProbe() as memory:
                result = run_study(spec, work / name, settings, callbacks=[probe])
            peaks.append((memory.peak_rss, memory.peak_pss))
            overhead.extend(probe.overheads())
            curves.setdefault(label, []).append(_curve(result.trials, budget))
            console.print(
                f"{name}: best {result.best_value:.2f} in {time.monotonic() - started:.0f} s"
            )
    grid_best = max(v for _, v in curves["grid"][0])
    table = Table(
        title=f"digits PCD space ({GRID} configs, {max_epochs} epochs): best val top-1 "
        f"vs trial-epochs (grid best {grid_best:.2f}, grid budget {budget})"
    )
    table.add_column("strategy")
    checkpoints = [int(budget * f) for f in (0.1, 0.2, 0.4, 0.6, 1.0)]
    for c in checkpoints:
        table.add_column(f"@{c}", justify="right")
    table.add_column("epochs to reach grid best - 0.5", justify="right")
    summary: dict[str, Any] = {"grid_best": grid_best, "budget": budget, "strategies": {}}
    for label, runs in curves.items():
        cells = []
        for c in checkpoints:
            vals = [max((v for s, v in run if s <= c), default=float("nan")) for run in runs]
            mean, std = mean_std(vals)
            cells.append(f"{mean:.2f}" + (f" ± {std:.2f}" if len(vals) > 1 else ""))
        reach = [next((s for s, v in run if v >= grid_best - 0.5), None) for run in runs]
        reach_txt = ", ".join("never" if r is None else f"{r} ({r / budget:.0%})" for r in reach)
        table.add_row(label, *cells, reach_txt)
        summary["strategies"][label] = {"curves": runs, "reach": reach}
    console.print(table)
    rss, pss = max(p[0] for p in peaks), max(p[1] for p in peaks)
    console.print(
        f"scheduling overhead per trial: median {statistics.median(overhead):.2f} s, "
        f"p90 {sorted(overhead)[int(0.9 * (len(overhead) - 1))]:.2f} s over {len(overhead)} trials"
    )
    console.print(
        f"peak memory of a study (driver + Ray + trials): PSS {pss / 2**30:.2f} GiB, "
        f"summed RSS {rss / 2**30:.2f} GiB"
    )
    summary.update(overhead_s=overhead, peak_pss=pss, peak_rss=rss)
    (out / "search_bench.json").write_text(json.dumps(summary))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, runs in curves.items():
        for i, run in enumerate(runs):
            xs, ys = zip(*run, strict=True) if run else ((), ())
            ax.step(
                xs,
                ys,
                where="post",
                alpha=0.8,
                label=label if i == 0 else None,
                color={"grid": "k", "tpe+asha": "C0", "random+asha": "C1", "random": "C2"}[label],
            )
    ax.axhline(grid_best - 0.5, ls=":", color="gray", label="grid best - 0.5")
    ax.set_xlabel("trial-epochs spent")
    ax.set_ylabel("best val top-1 so far (%)")
    ax.set_ylim(grid_best - 10, grid_best + 1)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "search_bench.png", dpi=120)
    console.print(f"plot: {out / 'search_bench.png'}")


if __name__ == "__main__":
    app()
