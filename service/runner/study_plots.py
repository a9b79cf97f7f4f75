"""A study's plots, logged to its MLflow parent run under ``plots/``: Optuna's own
(optuna.visualization.matplotlib) for every objective, the Pareto front of a two-objective
study, and the per-class accuracy of the best trial at its best epoch; and a trial's
per-epoch curves (its run's ``plots/curves.png``).

Each plot is drawn on its own: one that cannot be drawn (too few trials, a single parameter)
is skipped with a log line, never failing the study. File names:
``optuna_history_<metric>.png``, ``optuna_importances_<metric>.png``,
``optuna_contour_<metric>.png``, ``optuna_slice_<metric>.png`` (with >= 2 sampled
parameters), ``optuna_pareto_front.png`` and ``best_trial_per_class.png``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import optuna

from pcd_core.run_dir import RunDir
from service.ranking import Mode, best_index
from service.study_files import StudyFolder

log = logging.getLogger(__name__)

MAX_CONTOUR_PARAMS = 3  # a contour grid is n x n plots: the most important n parameters


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(drawn: Any, path: Path) -> None:
    """Save the figure of an Axes (or of an array of them) and close it."""
    plt = _pyplot()
    axes = drawn.flatten()[0] if hasattr(drawn, "flatten") else drawn
    fig = axes.get_figure()
    if getattr(drawn, "ndim", 0) == 2:  # a grid (contour): room for each panel
        rows, cols = drawn.shape
        fig.set_size_inches(3.2 * cols + 1, 2.8 * rows)
    fig.savefig(path, bbox_inches="tight")  # (tight_layout would overlap Optuna's colorbars)
    plt.close(fig)


def _draw(path: Path, draw: Callable[[], Any]) -> Path | None:
    """``draw()`` saved to ``path``; None (logged) when it cannot be drawn."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna's ExperimentalWarning for matplotlib
            _save(draw(), path)
        return path
    except Exception as err:
        log.info("plot %s not drawn: %s", path.name, err)
        _pyplot().close("all")
        return None


def optuna_plots(study: optuna.Study, metrics: Sequence[str], out: Path) -> list[Path]:
    """Optuna's plots of ``study`` (one objective per metric, in ``study.directions``'
    order) into ``out``: history, importances, contour and slice per objective, and the
    Pareto front when there are two or more."""
    vis = optuna.visualization.matplotlib
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and t.values]
    searched = sorted({p for t in done for p in t.distributions})
    paths: list[Path | None] = []
    for i, metric in enumerate(metrics):
        kw: dict[str, Any] = {"target": _objective(i), "target_name": metric}
        plots: dict[str, Callable[..., Any]] = {
            "history": vis.plot_optimization_history,
            "importances": partial(vis.plot_param_importances, evaluator=_evaluator()),
        }
        if len(searched) >= 2:
            kw_contour = {**kw, "params": _most_important(study, kw["target"], searched)}
            plots["contour"] = partial(vis.plot_contour, **kw_contour)
            plots["slice"] = vis.plot_slice
        for kind, plot in plots.items():
            call = partial(plot, study) if kind == "contour" else partial(plot, study, **kw)
            paths.append(_draw(out / f"optuna_{kind}_{metric}.png", call))
    if len(metrics) >= 2:
        front = partial(vis.plot_pareto_front, study, target_names=list(metrics))
        paths.append(_draw(out / "optuna_pareto_front.png", front))
    return [p for p in paths if p is not None]


def _objective(i: int) -> Callable[[optuna.trial.FrozenTrial], float]:
    return lambda t: t.values[i]


def _evaluator() -> optuna.importance.BaseImportanceEvaluator:
    """fANOVA: how much of the objective's variance a parameter explains, whichever the
    objective's direction (Optuna's default, PED-ANOVA, assumes one to minimise)."""
    return optuna.importance.FanovaImportanceEvaluator(seed=0)


def _most_important(study: optuna.Study, target: Callable, searched: list[str]) -> list[str]:
    """The MAX_CONTOUR_PARAMS most important parameters (the first ones when unknown)."""
    try:
        importances = optuna.importance.get_param_importances(
            study, target=target, evaluator=_evaluator()
        )
        ranked = list(importances)
    except Exception:
        ranked = []
    ranked += [p for p in searched if p not in ranked]
    return ranked[:MAX_CONTOUR_PARAMS]


def per_class_plot(per_class: list[float], path: Path) -> Path | None:
    """A bar per class: the best trial's val accuracy at its best epoch."""
    if not per_class:
        return None

    def draw() -> Any:
        _fig, ax = _pyplot().subplots(figsize=(6, 4))
        ax.bar(range(len(per_class)), per_class)
        ax.set_xlabel("class")
        ax.set_ylabel("val accuracy % (best trial, best epoch)")
        return ax

    return _draw(path, draw)


def trial_curves(epochs: list[dict[str, Any]], path: Path, metric: str, mode: Mode) -> Path | None:
    """A trial's accuracies and losses per epoch, its best epoch (by ``metric``) marked."""
    if not epochs:
        return None
    xs = [int(e["epoch"]) for e in epochs]
    best = best_index([e.get(metric) for e in epochs], mode)

    def draw() -> Any:
        _fig, (acc, loss) = _pyplot().subplots(1, 2, figsize=(10, 4))
        for key in ("train_top1", "val_top1", "val_top5", "val_hard_top1"):
            _curve(acc, xs, [e.get(key) for e in epochs], key)
        _curve(loss, xs, [(e.get("losses") or {}).get("total") for e in epochs], "train loss")
        _curve(loss, xs, [e.get("val_loss") for e in epochs], "val_loss")
        acc.set_ylabel("accuracy %")
        loss.set_ylabel("loss")
        for ax in (acc, loss):
            ax.set_xlabel("epoch")
            ax.xaxis.get_major_locator().set_params(integer=True)
            if best is not None:
                ax.axvline(xs[best], color="grey", linestyle=":", label=f"best {metric}")
            ax.legend()
        return acc

    return _draw(path, draw)


def _curve(ax: Any, xs: list[int], ys: list[Any], label: str) -> None:
    points = [(x, y) for x, y in zip(xs, ys, strict=True) if isinstance(y, int | float)]
    if points:
        ax.plot(*zip(*points, strict=True), "o-", markersize=3, label=label)


def best_epoch_per_class(
    folder: StudyFolder, trial_id: str | None, metric: str, mode: Mode
) -> list[float]:
    """Per-class val accuracy of a trial at its best epoch (by the study's objective)."""
    if trial_id is None:
        return []
    epochs = RunDir(folder.trial_dir(str(trial_id))).read_metrics()
    best = best_index([e.get(metric) for e in epochs], mode)
    return [] if best is None else epochs[best]["val_per_class"]


def log_study_plots(
    client: Any,
    run_id: str,
    study: optuna.Study,
    objectives: Sequence[tuple[str, Mode]],
    folder: StudyFolder,
    best_trial_id: str | None,
) -> list[Path]:
    """Draw the study's plots into its folder's ``plots/`` and log them to its parent run."""
    out = folder.plots_dir
    out.mkdir(exist_ok=True)
    paths = optuna_plots(study, [m for m, _ in objectives], out)
    try:
        per_class = best_epoch_per_class(folder, best_trial_id, *objectives[0])
    except (OSError, KeyError, ValueError) as err:  # no readable folder on this node
        log.info("best trial's per-class accuracy not read: %s", err)
        per_class = []
    plot = per_class_plot(per_class, out / "best_trial_per_class.png")
    paths += [plot] if plot else []
    for png in paths:
        client.log_artifact(run_id, str(png), "plots")
    return paths
