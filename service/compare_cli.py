"""``pcd compare``: which distillation method, with which settings, gives the best student on
your data, and is the difference real? (service.comparison runs it; merged into the root.)"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from pcd_core.cli_errors import INTERRUPTED, USAGE_ERROR, fail
from pcd_core.methods import METHODS
from search_spaces import SpecError, load_spec
from search_spaces.schema import comparison_preset, comparison_presets, preset_questions
from service.comparison import ablation_reading, delta_text
from service.settings import DEFAULT_MLFLOW_LOCAL_DIR, DEFAULT_TEACHER_ROOT, RunnerSettings
from service.study_files import ComparisonResult, EntryResult, StudySummary

compare_app = typer.Typer()


def _entries(methods: str | None, preset: str | None) -> list[str]:
    """The entry names the flags ask for: --methods, or a --preset's entries."""
    if preset is None:
        return _methods(methods or "ce,kd,dkd,pcd")
    if methods is not None:
        fail("--methods / --preset: give one of them", USAGE_ERROR)
    try:
        entries = comparison_preset(preset)["entries"]
    except ValueError as err:
        fail(f"--preset: {err}", USAGE_ERROR)
    return [e if isinstance(e, str) else e["name"] for e in entries]


def _methods(value: str) -> list[str]:
    names = [m.strip() for m in value.split(",") if m.strip()]
    for name in names:
        if name not in METHODS:
            fail(f"--methods: unknown method {name!r}; one of {', '.join(METHODS)}", USAGE_ERROR)
    if len(names) < 2 or len(set(names)) != len(names):
        fail("--methods: give at least two different methods, e.g. ce,kd,pcd", USAGE_ERROR)
    return names


@compare_app.command("compare")
def compare_command(
    student: Annotated[str | None, typer.Option("--student", help="student model")] = None,
    teacher: Annotated[
        Path | None, typer.Option("--teacher", help="a stored teacher artifact")
    ] = None,
    teacher_arch: Annotated[
        str | None, typer.Option("--teacher-arch", help="train a teacher of this model once")
    ] = None,
    teacher_epochs: Annotated[
        int, typer.Option("--teacher-epochs", min=1, help="epochs of a trained teacher")
    ] = 20,
    data: Annotated[str, typer.Option("--data", help="dataset, e.g. image_folder")] = "digits",
    data_root: Annotated[
        Path | None,
        typer.Option(
            "--data-root", envvar="PCD_DATA_ROOT", help="the image folder (train/, test/)"
        ),
    ] = None,
    methods: Annotated[
        str | None,
        typer.Option(
            "--methods", help="comma-separated; ce is the student alone [default: ce,kd,dkd,pcd]"
        ),
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(
            "--preset",
            help="a shipped comparison instead of --methods: "
            + ", ".join(comparison_presets())
            + " (PCD taken apart: stages, weighting, ranking, KD at PCD's CE weight)",
        ),
    ] = None,
    seeds: Annotated[int, typer.Option("--seeds", min=1, max=20, help="seeds per entry")] = 3,
    trials: Annotated[int, typer.Option("--trials", min=1, help="search trials per method")] = 8,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="epochs of every run")] = 10,
    reference: Annotated[
        str | None, typer.Option("--reference", help="default: pcd if compared, else the first")
    ] = None,
    spec_file: Annotated[
        Path | None, typer.Option("--spec", help="a comparison spec (YAML) instead of flags")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="study folder; default runs/compare/<name>")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    num_cpus: Annotated[int | None, typer.Option("--num-cpus", help="CPUs of a local Ray")] = None,
) -> None:
    """Tune each method on val with the same budget and sampler, train every tuned
    configuration over the seeds and compare each with the reference, seed by seed."""
    from service.comparison import ComparisonInputs, comparison_spec, run_comparison_spec

    settings = _settings(num_cpus)
    if spec_file is not None:
        spec = _load(spec_file)
        if data_root is not None:
            settings.data_root = data_root
    else:
        spec, roots = _spec_from_flags(
            ComparisonInputs,
            comparison_spec,
            student=student,
            teacher=teacher,
            teacher_arch=teacher_arch,
            teacher_epochs=teacher_epochs,
            data=data,
            data_root=data_root,
            methods=methods,
            preset=preset,
            seeds=seeds,
            trials=trials,
            epochs=epochs,
            reference=reference,
        )
        for key, value in roots.items():
            setattr(settings, key, value)
    console = Console(stderr=True)
    try:  # progress (Tune's included) on stderr, the result alone on stdout
        with contextlib.redirect_stdout(sys.stderr):
            summary = run_comparison_spec(
                spec, out, settings, on_phase=lambda p: console.print(f"[dim]{p} ...[/dim]")
            )
    except KeyboardInterrupt:
        fail("interrupted; run the same command again (same --out) to resume", INTERRUPTED)
    except (SpecError, ValueError, FileNotFoundError, RuntimeError) as err:
        fail(err)
    _report(summary, settings, as_json, preset_questions(preset) if preset else {})


def _settings(num_cpus: int | None) -> RunnerSettings:
    """The environment's runner settings (PCD_*), the local MLflow store by default."""
    env = RunnerSettings.from_env()
    return RunnerSettings(
        tracking_uri=env.tracking_uri,
        mlflow_local_dir=env.mlflow_local_dir or DEFAULT_MLFLOW_LOCAL_DIR,
        mlflow_public_url=env.mlflow_public_url,
        data_root=env.data_root,
        teacher_root=env.teacher_root or DEFAULT_TEACHER_ROOT,
        num_cpus=num_cpus,
    )


def _load(path: Path) -> Any:
    try:
        spec = load_spec(path)
    except SpecError as err:
        fail(f"--spec: {err}", USAGE_ERROR)
    if spec.comparison is None:
        fail(f"--spec: {path} has no comparison section (use `pcd study run`)", USAGE_ERROR)
    return spec


def _spec_from_flags(inputs_cls: Any, make_spec: Any, **flags: Any) -> Any:
    """The spec of the flags; a one-line error naming the flag otherwise."""
    if flags["student"] is None:
        fail("--student: required (or give --spec)", USAGE_ERROR)
    if (flags["teacher"] is None) == (flags["teacher_arch"] is None):
        fail("--teacher / --teacher-arch: give exactly one", USAGE_ERROR)
    if flags["teacher"] is not None and not Path(flags["teacher"]).is_file():
        fail(f"--teacher: {flags['teacher']} is not a file", USAGE_ERROR)
    root = flags["data_root"]
    if flags["data"] == "image_folder" and root is None:
        fail(
            "--data-root: required with --data image_folder (the folder of train/, test/)",
            USAGE_ERROR,
        )
    if root is not None and flags["data"] == "image_folder" and not Path(root).is_dir():
        fail(f"--data-root: {root} is not a folder", USAGE_ERROR)
    names = _entries(flags.pop("methods"), flags["preset"])
    if flags["reference"] is not None and flags["reference"] not in names:
        fail(f"--reference: {flags['reference']!r} is not one of {', '.join(names)}", USAGE_ERROR)
    try:
        chosen = {} if flags["preset"] is not None else {"methods": names}
        return make_spec(inputs_cls(**chosen, **flags))
    except SpecError as err:
        fail(_flag_named(str(err)), USAGE_ERROR)


_FIELD_FLAGS = {"student": "--student", "teacher": "--teacher-arch", "data": "--data"}


def _flag_named(message: str) -> str:
    """A spec error about a field the flags set, named by its flag."""
    field = message.removeprefix("comparison: ").split(":")[0].split(".")[0]
    return f"{_FIELD_FLAGS[field]}: {message}" if field in _FIELD_FLAGS else message


def _report(
    summary: StudySummary, settings: RunnerSettings, as_json: bool, questions: dict[str, str]
) -> None:
    result = summary.comparison
    assert result is not None
    if as_json:
        out = {
            "study_dir": str(summary.study_dir),
            "parent_run_id": summary.parent_run_id,
            "tracking_uri": summary.tracking_uri,
            "comparison": result.model_dump(mode="json"),
        }
        typer.echo(json.dumps(out, indent=1))
        return
    console = Console(width=None if sys.stdout.isatty() else 160)  # a whole row in a log too
    console.print(results_table(result))
    for entry in result.entries:
        if entry.vs_reference is not None:
            console.print(
                f"{entry.name} − {result.reference}: {delta_text(entry)} (95% CI of the paired "
                f"difference) → {entry.vs_reference.verdict}"
            )
    if questions:
        console.print(f"What each part of {result.reference} does on this data:")
        for entry in result.entries:
            if entry.name in questions and entry.vs_reference is not None:
                console.print(
                    f"  {entry.name} — {questions[entry.name]}: "
                    f"{ablation_reading(entry, result.reference)}"
                )
    from service.cli import _print_mlflow

    _print_mlflow(console, summary, settings.mlflow_public_url)
    console.print(f"study folder: {summary.study_dir}")


def _pm(mean: float, std: float) -> str:
    return f"{mean:.2f} ± {std:.2f}"


def _options(entry: EntryResult) -> str:
    values = ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in entry.options.items()
    )
    tuning = f"{entry.tuning}, {entry.trials} trials" if entry.trials else entry.tuning
    return f"{values} ({tuning})" if values else tuning


def results_table(result: ComparisonResult) -> Table:
    """The comparison as a table: one row per entry."""
    hard = ", ".join(result.hard_class_names) or "-"
    table = Table(title=f"comparison: {result.metric}; {result.seeds} seeds; hard classes: {hard}")
    for col in ("entry", "options", "test top-1 best-on-val", "last epoch", "hard classes"):
        table.add_column(col)
    table.add_column(f"Δ vs {result.reference} ± 95% CI")
    table.add_column("verdict")
    for e in result.entries:
        table.add_row(
            e.name,
            _options(e),
            _pm(e.test_top1_best_val_stats.mean, e.test_top1_best_val_stats.std),
            _pm(e.test_top1_last_stats.mean, e.test_top1_last_stats.std),
            "-"
            if e.hard_top1_stats is None
            else _pm(e.hard_top1_stats.mean, e.hard_top1_stats.std),
            delta_text(e),
            "reference" if e.vs_reference is None else e.vs_reference.verdict,
        )
    return table
