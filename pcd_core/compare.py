"""Fixed-configuration method comparisons over seeds (the demo and bench/digits_compare.py).

Model selection is on val (best-on-val epoch); test accuracy is read only for the selected
weights and the last epoch, and reported as mean +- std over seeds.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from rich.table import Table

from pcd_core.methods import needs_teacher
from pcd_core.run_dir import RunDir
from pcd_core.train import DataConfig, TrainConfig, stored_config, train
from pcd_core.train.trainer import RunResult


@dataclass
class MethodSummary:
    """One method's results over seeds."""

    method: str
    options: dict[str, Any]
    val_top1: list[float] = field(default_factory=list)
    test_top1_best_val: list[float] = field(default_factory=list)
    test_top1_last: list[float] = field(default_factory=list)
    test_hard_top1: list[float] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    best_epochs: list[int] = field(default_factory=list)


class MeanStd(NamedTuple):
    """The mean of results over seeds and their sample standard deviation (0 for one)."""

    mean: float
    std: float


def mean_std(values: Sequence[float]) -> MeanStd:
    """Mean and sample standard deviation of ``values`` (at least one)."""
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return MeanStd(statistics.mean(values), std)


def format_mean_std(values: Sequence[float]) -> str:
    """``mean ± std`` to two decimals; ``-`` for no values."""
    if not values:
        return "-"
    mean, std = mean_std(values)
    return f"{mean:.2f} ± {std:.2f}"


def train_teacher(
    out: Path, *, arch: str, data: DataConfig, epochs: int, lr: float | None = None
) -> Path:
    """Train (or reuse, if its artifact exists) a teacher; returns the artifact path."""
    artifact = RunDir(out).teacher
    if artifact.is_file():
        return artifact
    result = train(TrainConfig(arch=arch, data=data, epochs=epochs, lr=lr), out)
    assert result.teacher_artifact is not None
    return result.teacher_artifact


def run_label(name: str, options: dict[str, Any]) -> str:
    """The run folder name of ``name`` with ``options`` (without the seed suffix)."""
    return name + "".join(f"-{k}{v}" for k, v in sorted(options.items()))


def _finished(config: TrainConfig, run_dir: Path) -> RunResult | None:
    """The result stored in ``run_dir``'s summary if it is a finished run of ``config``."""
    summary = RunDir(run_dir).read_summary()
    stored = None if summary is None else summary.get("config")
    if not isinstance(stored, dict) or stored_config(stored) != config.model_dump(mode="json"):
        return None
    return RunResult(
        out_dir=run_dir,
        history=[],
        best_epoch=int(summary["best_epoch"]),
        best_val_top1=float(summary["best_val_top1"]),
        test=summary["test"],
    )


def compare_methods(
    out: Path,
    *,
    teacher: Path,
    student: str,
    methods: Sequence[tuple[str, dict[str, Any]]],
    seeds: Sequence[int],
    data: DataConfig,
    epochs: int,
    lr: float | None = None,
    on_run: Callable[[str, int, float], None] | None = None,
    batch_size: int | None = None,
    logit_bank: Path | None = None,
    reuse_finished: bool = False,
) -> list[MethodSummary]:
    """Distil ``student`` with each method for each seed (same data batches for all:
    common random numbers), collecting val and test accuracies.

    ``logit_bank`` shares cached teacher logits between the runs (see ``prefill_logit_bank``).
    With ``reuse_finished``, a run whose folder already holds the summary of the same
    configuration is read instead of trained again (resumable comparisons)."""
    summaries = []
    for name, options in methods:
        summary = MethodSummary(name, dict(options))
        distils = needs_teacher(name)
        for seed in seeds:
            config = TrainConfig(
                arch=student,
                data=data,
                method=name,
                method_options=dict(options),
                teacher=teacher if distils else None,
                epochs=epochs,
                lr=lr,
                seed=seed,
                logit_bank=logit_bank if distils else None,
                **({} if batch_size is None else {"batch_size": batch_size}),
            )
            label = run_label(name, dict(options))
            run_dir = out / f"{label}-s{seed}"
            result = (_finished(config, run_dir) if reuse_finished else None) or train(
                config, run_dir
            )
            summary.seeds.append(seed)
            summary.best_epochs.append(result.best_epoch)
            summary.val_top1.append(result.best_val_top1)
            summary.test_top1_best_val.append(float(result.test["best_val"]["top1"]))
            summary.test_top1_last.append(float(result.test["last"]["top1"]))
            if "hard_top1" in result.test["best_val"]:
                summary.test_hard_top1.append(float(result.test["best_val"]["hard_top1"]))
            if on_run is not None:
                on_run(label, seed, result.best_val_top1)
        summaries.append(summary)
    return summaries


def summary_table(summaries: Sequence[MethodSummary], title: str) -> Table:
    """The comparison as a table: val (selection) and test (best-on-val and last), mean ± std."""
    table = Table(title=title)
    for col in (
        "method",
        "val top-1 %",
        "test top-1 % (best-on-val)",
        "test top-1 % (last)",
        "test hard-class %",
    ):
        table.add_column(col, justify="right")
    for s in summaries:
        table.add_row(
            s.method,
            format_mean_std(s.val_top1),
            format_mean_std(s.test_top1_best_val),
            format_mean_std(s.test_top1_last),
            format_mean_std(s.test_hard_top1),
        )
    return table
