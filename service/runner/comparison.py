"""The comparison driver: each tuned entry searched on val with the study's budget and sampler
(the same for all: fair by construction), then every entry trained over the seeds (common
random numbers: seed k is the same split, batch order and initialisation for every entry),
and every entry compared with the reference seed by seed (pcd_core.stats).

MLflow: the study's parent run holds every search trial (tagged ``Tags.ENTRY``) and every seed
run (``<entry> seed k``) as children, the comparison plot and per-entry metrics. Restores: a
finished search is read back from the study state (``StudyState.searches``), an unfinished
one restores its own Tune experiment (``search-<entry>``); seed runs resume from their folders
and their MLflow runs are found by tag before one is created.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import ray
from ray import tune

from pcd_core.compare import mean_std
from pcd_core.data import load_dataset
from pcd_core.methods import needs_teacher
from pcd_core.stats import paired_difference
from search_spaces.schema import ComparisonEntry, ComparisonSpec, StudySpec
from service.runner.comparison_report import log_comparison
from service.runner.errors import StudyError
from service.runner.remote import remote_opts, train_remote
from service.runner.study import (
    _best_row,
    _context,
    _data_root,
    _fail_orphans,
    _StateFile,
    _Tracking,
    _trial_row,
    _tuner,
    _write_summary,
    no_trial_completed,
)
from service.runner.tracking import system_tags
from service.runner.trainable import TrialContext, trial_config
from service.settings import RunnerSettings
from service.study_files import (
    ComparisonResult,
    EntryResult,
    EntrySearch,
    MeanStdResult,
    PairedResult,
    SeedResult,
    StudySummary,
    Tags,
)

Phase = Callable[[str], None]


def run_comparison(
    spec: StudySpec,
    settings: RunnerSettings,
    state: _StateFile,
    tracking: _Tracking,
    callbacks: list[tune.Callback] | None,
    phase: Phase,
) -> StudySummary:
    """Run (or resume) a comparison study to the end; its summary."""
    comparison = spec.comparison
    assert comparison is not None
    tracking.client.set_tag(tracking.parent_run_id, Tags.STUDY_KIND, "comparison")
    _check_classes(spec, settings)  # before the teacher: S=5 on 3 classes fails in seconds
    distiller = next((e.method for e in comparison.entries if needs_teacher(e.method)), "ce")
    entries_spec = spec.model_copy(update={"method": distiller})
    ctx = _context(entries_spec, settings, state, tracking, phase)
    for entry in comparison.entries:
        if entry.searches() and entry.name not in state.data.searches:
            phase(f"search {entry.name}")
            state.data.searches[entry.name] = _search_entry(
                spec, entry, ctx, settings, state, tracking, callbacks, phase
            )
            state.save()
    options = {e.name: _options(spec, e, state) for e in comparison.entries}
    phase(f"seeds ({comparison.seeds} per entry)")
    _run_seeds(spec, ctx, options, state, tracking)
    result = _result(spec, options, state, ctx)
    summary = StudySummary(
        name=spec.name,
        study_dir=state.folder.path,
        parent_run_id=tracking.parent_run_id,
        tracking_uri=tracking.uri,
        best_config=options[result.reference],
        best_value=result.entry(result.reference).best_val,
        best_trial_id=None,
        trials=[row for s in state.data.searches.values() for row in s.trials],
        comparison=result,
    )
    log_comparison(tracking.client, tracking.parent_run_id, result, state.folder)
    _write_summary(tracking.client, summary, state)
    return summary


def _check_classes(spec: StudySpec, settings: RunnerSettings) -> None:
    """StudyError naming the entry if one cannot work with the data's classes (the API checks
    this at submission; ``pcd compare`` and the Python API reach the driver first)."""
    size = {"image_size": spec.data.image_size} if spec.data.image_size is not None else {}
    classes = load_dataset(spec.data.name, "test", _data_root(spec, settings), **size).num_classes
    try:
        spec.check_classes(classes)
    except ValueError as err:
        raise StudyError(f"{err} (data {spec.data.name!r} has {classes} classes)") from None


def _entry_context(ctx: TrialContext, entry_spec: StudySpec) -> TrialContext:
    return replace(ctx, spec_json=entry_spec.model_dump(mode="json"))


def _search_entry(
    spec: StudySpec,
    entry: ComparisonEntry,
    ctx: TrialContext,
    settings: RunnerSettings,
    state: _StateFile,
    tracking: _Tracking,
    callbacks: list[tune.Callback] | None,
    phase: Phase,
) -> EntrySearch:
    """One entry's search: the study's budget, sampler, scheduler and seed, its own space."""
    entry_spec = spec.entry_spec(entry)
    storage = settings.optuna_storage or state.folder.optuna_uri
    study_name = f"{spec.name}-{state.folder.path.name}-{entry.slug}"
    tuner, restored = _tuner(
        entry_spec,
        _entry_context(ctx, entry_spec),
        settings,
        tracking,
        storage,
        study_name,
        callbacks,
        phase,
        experiment=f"search-{entry.slug}",
        entry=entry.name,
    )
    state.data.restored += int(restored)
    grid = tuner.fit()
    _fail_orphans(storage, study_name)
    objective = spec.objective
    rows = [
        _trial_row(r, objective.metric, objective.mode).model_copy(update={"entry": entry.name})
        for r in grid
    ]
    best = _best_row(rows, objective.mode)
    if best is None:
        raise StudyError(f"comparison entry {entry.name!r}: {no_trial_completed(rows)}")
    return EntrySearch(config=best.config, best_value=best.best, trials=rows)


def _options(spec: StudySpec, entry: ComparisonEntry, state: _StateFile) -> dict[str, Any]:
    """The options an entry's seed runs use: tuned, fixed, or inherited then overridden."""
    if entry.name in state.data.searches:
        return dict(state.data.searches[entry.name].config)
    tuned = None
    if entry.tuned_from is not None:
        source = state.data.searches.get(entry.tuned_from)
        assert spec.comparison is not None
        src = spec.comparison.entry(entry.tuned_from)
        tuned = source.config if source else spec.entry_spec(src).fixed_config()
    return spec.entry_spec(entry, tuned).fixed_config()


def _run_seeds(
    spec: StudySpec,
    ctx: TrialContext,
    options: dict[str, dict[str, Any]],
    state: _StateFile,
    tracking: _Tracking,
) -> None:
    """Every entry over seeds 0..N-1, in parallel on Ray, val kept (selection on val)."""
    comparison = spec.comparison
    assert comparison is not None
    pending: list[tuple[ComparisonEntry, int, str, Any]] = []
    for entry in comparison.entries:
        done = {r.seed for r in state.data.seed_results.get(entry.name, [])}
        entry_ctx = _entry_context(ctx, spec.entry_spec(entry, options[entry.name]))
        for seed in range(comparison.seeds):
            if seed in done:
                continue
            config = trial_config(entry_ctx, options[entry.name], seed=seed)
            run_id = _seed_run(tracking, entry, seed, options[entry.name])
            ref = train_remote.options(**remote_opts(spec)).remote(
                config.model_dump(mode="json"),
                str(state.folder.seed_run_dir(entry.slug, seed)),
            )
            pending.append((entry, seed, run_id, ref))
    for entry, seed, run_id, ref in pending:
        out = ray.get(ref)
        result = SeedResult(
            seed=seed,
            best_epoch=int(out["test"]["best_val"]["epoch"]),
            test_top1_best_val=float(out["test"]["best_val"]["top1"]),
            test_top1_last=float(out["test"]["last"]["top1"]),
            per_class_best_val=[float(v) for v in out["test"]["best_val"]["per_class"]],
            hard_classes=out.get("hard_classes"),
        )
        _finish_seed_run(tracking, run_id, result)
        state.data.seed_results.setdefault(entry.name, []).append(result)
        state.save()


def _seed_run(tracking: _Tracking, entry: ComparisonEntry, seed: int, options: dict) -> str:
    """The MLflow run of an entry's seed: found by tag (after a restore) or created."""
    client, parent = tracking.client, tracking.parent_run_id
    found = client.search_runs(
        [tracking.experiment_id],
        filter_string=(
            f"tags.`{Tags.PARENT_RUN}` = '{parent}' and tags.`{Tags.ENTRY}` = '{entry.name}' "
            f"and tags.`{Tags.SEED}` = '{seed}' and tags.`{Tags.SEED_RUN}` = 'true'"
        ),
        max_results=1,
    )
    if found:
        return found[0].info.run_id
    run = client.create_run(
        tracking.experiment_id,
        tags={
            Tags.PARENT_RUN: parent,
            Tags.RUN_NAME: f"{entry.name} seed {seed}",
            Tags.ENTRY: entry.name,
            Tags.SEED: str(seed),
            Tags.SEED_RUN: "true",
            **system_tags(),  # who, what and which commit, as the study's other runs
        },
    )
    params = {"method": entry.method, "seed": seed, **options}
    client.log_batch(run.info.run_id, params=_params(params))
    return run.info.run_id


def _params(values: dict[str, Any]) -> list[Any]:
    from mlflow.entities import Param

    return [Param(k, str(v)) for k, v in values.items()]


def _finish_seed_run(tracking: _Tracking, run_id: str, result: SeedResult) -> None:
    client = tracking.client
    client.log_metric(run_id, "test_top1_best_val", result.test_top1_best_val)
    client.log_metric(run_id, "test_top1_last", result.test_top1_last)
    client.log_metric(run_id, "best_epoch", result.best_epoch)
    client.set_terminated(run_id, status="FINISHED")


def _result(
    spec: StudySpec, options: dict[str, dict[str, Any]], state: _StateFile, ctx: TrialContext
) -> ComparisonResult:
    """Each entry's seeds, means and paired difference to the reference."""
    comparison = spec.comparison
    assert comparison is not None
    by_entry = {
        name: sorted(results, key=lambda r: r.seed)
        for name, results in state.data.seed_results.items()
    }
    hard = (
        next((r.hard_classes for rs in by_entry.values() for r in rs if r.hard_classes), None) or []
    )
    reference = comparison.reference_name
    ref_tops = [r.test_top1_best_val for r in by_entry[reference]]
    entries = [
        _entry_result(spec, e, options[e.name], by_entry[e.name], hard, ref_tops, reference, state)
        for e in comparison.entries
    ]
    return ComparisonResult(
        reference=reference,
        seeds=comparison.seeds,
        hard_classes=hard,
        hard_class_names=_class_names(spec, ctx, hard),
        entries=entries,
    )


def _class_names(spec: StudySpec, ctx: TrialContext, indices: list[int]) -> list[str]:
    size = {"image_size": spec.data.image_size} if spec.data.image_size is not None else {}
    names = load_dataset(spec.data.name, "test", ctx.data_root, **size).class_names
    return [names[i] for i in indices]


def _entry_result(
    spec: StudySpec,
    entry: ComparisonEntry,
    options: dict[str, Any],
    seeds: list[SeedResult],
    hard: list[int],
    ref_tops: list[float],
    reference: str,
    state: _StateFile,
) -> EntryResult:
    search = state.data.searches.get(entry.name)
    tops = [r.test_top1_best_val for r in seeds]
    lasts = [r.test_top1_last for r in seeds]
    hard_tops = (
        [sum(r.per_class_best_val[c] for c in hard) / len(hard) for r in seeds] if hard else []
    )
    tuning = (
        "searched"
        if search is not None
        else f"tuned_from {entry.tuned_from}"
        if entry.tuned_from is not None
        else "nothing to tune"
    )
    return EntryResult(
        name=entry.name,
        method=entry.method,
        tuning=tuning,
        options=options,
        trials=len(search.trials) if search else 0,
        max_epochs=spec.training.epochs or spec.budget.max_epochs,
        best_val=search.best_value if search else None,
        seeds=[r.seed for r in seeds],
        best_epochs=[r.best_epoch for r in seeds],
        test_top1_best_val=tops,
        test_top1_last=lasts,
        hard_top1=hard_tops,
        test_top1_best_val_stats=MeanStdResult(**mean_std(tops)._asdict()),
        test_top1_last_stats=MeanStdResult(**mean_std(lasts)._asdict()),
        hard_top1_stats=MeanStdResult(**mean_std(hard_tops)._asdict()) if hard_tops else None,
        vs_reference=None
        if entry.name == reference
        else _paired(tops, ref_tops, entry.name, reference),
    )


def _paired(tops: list[float], ref: list[float], name: str, reference: str) -> PairedResult:
    diff = paired_difference(tops, ref)
    return PairedResult(
        mean=diff.mean,
        std=diff.std,
        ci95=None if diff.ci95 != diff.ci95 else diff.ci95,
        wins=diff.wins,
        n=diff.n,
        verdict=diff.verdict(name, reference),
    )


__all__ = ["ComparisonSpec", "run_comparison"]
