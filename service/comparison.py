"""Comparing distillation methods on your data, from Python (``pcd compare`` is its command).

    from service.comparison import compare
    result = compare(student="mlp_32", teacher_arch="cnn_small", methods=["ce", "kd", "pcd"],
                     data="digits", seeds=3, trials=8, epochs=10)
    for entry in result.entries:
        print(entry.name, entry.test_top1_best_val_stats.mean, entry.vs_reference)

Each method with options is tuned on val with the same budget and sampler, then trained over
the seeds (common random numbers) and compared with the reference seed by seed; the runs are
a comparison study (service.runner.comparison) in a study folder, tracked in MLflow.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search_spaces import SpecError, parse_spec
from search_spaces.schema import StudySpec
from service.settings import DEFAULT_MLFLOW_LOCAL_DIR, RunnerSettings
from service.study_files import ComparisonResult, EntryResult, StudySummary

__all__ = [
    "ComparisonInputs",
    "ablation_reading",
    "compare",
    "comparison_spec",
    "delta_text",
    "run_comparison_spec",
]


@dataclass(frozen=True)
class ComparisonInputs:
    """What a comparison is asked for (the CLI's flags, the Python API's arguments)."""

    student: str
    methods: Sequence[str | dict[str, Any]] = ("ce", "kd", "dkd", "pcd")
    preset: str | None = None  # a shipped comparison (e.g. pcd-ablation) instead of methods
    data: str = "digits"
    data_root: Path | None = None  # an image folder (train/, test/), or a download folder
    teacher: Path | None = None  # a stored teacher artifact, or
    teacher_arch: str | None = None  # a teacher to train once
    teacher_epochs: int = 20
    seeds: int = 3
    trials: int = 8
    epochs: int = 10
    reference: str | None = None
    sampler: str = "tpe"
    name: str | None = None

    def spec(self) -> tuple[StudySpec, dict[str, Path]]:
        """The comparison's spec and the roots its data and teacher are named under."""
        return comparison_spec(self)


def comparison_spec(inputs: ComparisonInputs) -> tuple[StudySpec, dict[str, Path]]:
    """The comparison study spec of ``inputs`` (SpecError naming the field if invalid) and
    the settings' roots it needs (``data_root``, ``teacher_root``)."""
    roots: dict[str, Path] = {}
    data: dict[str, Any] = {"name": inputs.data}
    if inputs.data_root is not None and inputs.data != "digits":
        root = Path(inputs.data_root).resolve()
        roots["data_root"], data["root"] = root.parent, root.name
    if (inputs.teacher is None) == (inputs.teacher_arch is None):
        raise SpecError("teacher: give either a stored teacher or a teacher arch to train")
    if inputs.teacher is not None:
        path = Path(inputs.teacher).resolve()
        roots["teacher_root"], teacher = path.parent, {"checkpoint": path.name}
    else:
        teacher = {"arch": inputs.teacher_arch, "epochs": inputs.teacher_epochs}
    raw = {
        "name": inputs.name
        or f"{inputs.preset or 'compare'}-{inputs.data}-{inputs.student}".replace("_", "-"),
        "data": data,
        "teacher": teacher,
        "student": inputs.student,
        "budget": {"trials": inputs.trials, "max_epochs": inputs.epochs},
        "scheduler": {"type": "none"},  # every trial runs the whole budget
        "sampler": {"type": inputs.sampler},
        "comparison": {
            **(
                {"preset": inputs.preset}
                if inputs.preset is not None
                else {"entries": list(inputs.methods)}
            ),
            "reference": inputs.reference,
            "seeds": inputs.seeds,
        },
    }
    return parse_spec(raw, source="comparison"), roots


def run_comparison_spec(
    spec: StudySpec,
    out: Path | None = None,
    settings: RunnerSettings | None = None,
    on_phase: Callable[[str], None] | None = None,
) -> StudySummary:
    """Run (or resume, if ``out`` holds it) a comparison study; its summary."""
    from service.runner.study import run_study

    if spec.comparison is None:
        raise SpecError(f"{spec.name}: not a comparison (no comparison section)")
    settings = settings or RunnerSettings(mlflow_local_dir=DEFAULT_MLFLOW_LOCAL_DIR)
    folder = out or Path("runs") / "compare" / spec.name
    return run_study(spec, folder, settings, on_phase=on_phase)


def compare(
    student: str,
    *,
    methods: Sequence[str | dict[str, Any]] = ("ce", "kd", "dkd", "pcd"),
    preset: str | None = None,
    data: str = "digits",
    data_root: Path | None = None,
    teacher: Path | None = None,
    teacher_arch: str | None = None,
    seeds: int = 3,
    trials: int = 8,
    epochs: int = 10,
    reference: str | None = None,
    out: Path | None = None,
    settings: RunnerSettings | None = None,
) -> ComparisonResult:
    """Tune each method on val with the same budget, train it over ``seeds`` seeds and compare
    it with ``reference`` seed by seed (see the module's docstring). ``methods``: names
    (``ce`` is the student alone) or entries ``{name, method, fixed, space, tuned_from}``;
    ``preset``: a shipped comparison instead (``"pcd-ablation"``: PCD taken apart)."""
    inputs = ComparisonInputs(
        student=student,
        methods=methods,
        preset=preset,
        data=data,
        data_root=data_root,
        teacher=teacher,
        teacher_arch=teacher_arch,
        seeds=seeds,
        trials=trials,
        epochs=epochs,
        reference=reference,
    )
    spec, roots = comparison_spec(inputs)
    base = settings or RunnerSettings(mlflow_local_dir=DEFAULT_MLFLOW_LOCAL_DIR)
    settings = _with_roots(base, roots)
    summary = run_comparison_spec(spec, out, settings)
    assert summary.comparison is not None
    return summary.comparison


def _with_roots(settings: RunnerSettings, roots: dict[str, Path]) -> RunnerSettings:
    from dataclasses import replace

    return replace(settings, **roots)


def delta_text(entry: EntryResult) -> str:
    """An entry's paired difference to the reference: mean, 95 % interval (none with one
    seed or the same difference on every seed), the seeds on which it is ahead."""
    d = entry.vs_reference
    if d is None:
        return "-"
    ci = "± n/a" if d.ci95 is None else f"± {d.ci95:.2f}"
    return f"{d.mean:+.2f} {ci} ({d.wins}/{d.n} ahead)"


def ablation_reading(entry: EntryResult, reference: str) -> str:
    """What an ablation entry's paired difference to ``reference`` says about the part of the
    reference it changes (for a preset such as pcd-ablation; questions in its file)."""
    d = entry.vs_reference
    if d is None:
        return "the reference"
    if d.ci95 is None or abs(d.mean) <= d.ci95:
        return "no clear difference (the interval includes 0: within the seeds' noise)"
    if d.mean < 0:
        return f"{reference}'s choice helps: {entry.name} is worse"
    return f"{reference}'s choice hurts here: {entry.name} is better"
