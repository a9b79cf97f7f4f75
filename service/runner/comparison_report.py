"""A finished comparison in MLflow: per-entry metrics on the parent run and the comparison
plot (bars: mean test top-1 at the best-on-val epoch; dots: the seeds; error bars: the 95 %
interval of each entry's paired difference to the reference, drawn around the entry's mean)."""

from __future__ import annotations

import logging
import re

from mlflow.tracking import MlflowClient

from service.runner.study_plots import _pyplot
from service.study_files import ComparisonResult, StudyFolder

log = logging.getLogger(__name__)


def metric_key(entry: str) -> str:
    """An entry name as an MLflow metric name prefix."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", entry)


def log_comparison(
    client: MlflowClient, run_id: str, result: ComparisonResult, folder: StudyFolder
) -> None:
    """Parent metrics per entry and the plot (``plots/comparison.png``)."""
    for entry in result.entries:
        key = metric_key(entry.name)
        client.log_metric(run_id, f"{key}.test_top1_mean", entry.test_top1_best_val_stats.mean)
        client.log_metric(run_id, f"{key}.test_top1_std", entry.test_top1_best_val_stats.std)
        client.log_metric(run_id, f"{key}.test_top1_last_mean", entry.test_top1_last_stats.mean)
        if entry.hard_top1_stats is not None:
            client.log_metric(run_id, f"{key}.hard_top1_mean", entry.hard_top1_stats.mean)
        if entry.vs_reference is not None:
            client.log_metric(run_id, f"{key}.delta_vs_reference", entry.vs_reference.mean)
            if entry.vs_reference.ci95 is not None:
                client.log_metric(run_id, f"{key}.delta_ci95", entry.vs_reference.ci95)
    client.set_tag(run_id, "pcd.reference", result.reference)
    try:
        path = plot_comparison(result, folder)
    except Exception:  # a plot never fails the study
        log.warning("could not draw the comparison plot", exc_info=True)
        return
    client.log_artifact(run_id, str(path), "plots")


def plot_comparison(result: ComparisonResult, folder: StudyFolder):
    """Draw the comparison plot into the study's plots folder; its path."""
    plt = _pyplot()
    names = [e.name for e in result.entries]
    means = [e.test_top1_best_val_stats.mean for e in result.entries]
    errors = [
        (e.vs_reference.ci95 or 0.0) if e.vs_reference is not None else 0.0 for e in result.entries
    ]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.4 * len(names)), 4.0))
    colors = ["tab:orange" if n == result.reference else "tab:blue" for n in names]
    ax.bar(range(len(names)), means, yerr=errors, capsize=6, color=colors, alpha=0.6)
    for i, entry in enumerate(result.entries):
        ax.scatter([i] * len(entry.test_top1_best_val), entry.test_top1_best_val, color="k", s=12)
    ax.set_xticks(range(len(names)), names, rotation=20)
    low = min(min(e.test_top1_best_val) for e in result.entries)
    high = max(max(e.test_top1_best_val) for e in result.entries)
    ax.set_ylim(max(0.0, low - 5.0), min(100.0, high + 3.0))  # differences of a point show
    ax.set_ylabel("test top-1 % (best-on-val epoch)")
    ax.set_title(
        f"{len(result.entries)} entries x {result.seeds} seeds; error bars: 95 % CI of the "
        f"paired difference to {result.reference}",
        fontsize=9,
    )
    folder.plots_dir.mkdir(parents=True, exist_ok=True)
    path = folder.comparison_plot
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path
