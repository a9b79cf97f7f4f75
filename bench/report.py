"""The results report: PCD against KD and DKD on Fashion-MNIST, and PCD taken apart, through
the product's own comparison studies (the code a user's `pcd compare` runs).

    python bench/report.py [--out runs/report] [--docs docs] [--workers 2] [--quick]

Protocol (nothing is selected on test):
1. A stratified subset of Fashion-MNIST's 60k training images is written as IDX files under
   ``OUT/data`` (the full 10k test set is kept); 20 % of it is the val split.
2. Two comparison studies (service.comparison) on that data, one teacher (trained by the
   first, loaded by the second) and one logit bank:
   - ``methods``: ce, kd, dkd, pcd and the authors' released variant, each tuned on val with
     the same trial budget and sampler (``pcd compare --methods ...``);
   - ``ablation``: the shipped ``pcd-ablation`` comparison (``pcd compare --preset
     pcd-ablation``): PCD tuned at S=3, then S, weighting and ranking changed one at a time
     on its tuned options, KD tuned at PCD's cross-entropy weight, and the student alone.
   Searches run with the tuning seed; every entry is then trained with seeds 0..N-1 (common
   random numbers), its model is its best-on-val epoch, and it is compared with the
   reference seed by seed (95 % interval of the paired difference).
3. ``DOCS/results.md``, the comparison plots (``DOCS/results/*.png``) and a JSON summary
   (``DOCS/results/report.json``) are written from the studies' summaries.

The studies live in ``OUT/studies/<name>/`` and are tracked in ``OUT/mlflow`` (MLflow UI:
``mlflow ui --backend-store-uri sqlite:///OUT/mlflow/mlflow.db``). An interrupted report
resumes them; a finished study is read back, not run again. ``--quick`` is a tiny smoke
version (small subset, 1 epoch, 2 seeds, 2 trials per search).
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import statistics
import struct
import sys
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import typer
from rich.console import Console

from pcd_core.compare import format_mean_std
from pcd_core.data import FASHION_MNIST_DEBIAN_DIR, load_idx_dataset
from pcd_core.models import build_model, count_parameters
from pcd_core.stats import paired_difference
from pcd_core.train import load_teacher
from search_spaces import parse_spec
from search_spaces.schema import StudySpec, preset_questions
from service.comparison import (
    ComparisonInputs,
    ablation_reading,
    comparison_spec,
    delta_text,
    run_comparison_spec,
)
from service.runner.comparison_report import plot_comparison
from service.settings import RunnerSettings
from service.study_files import ComparisonResult, EntryResult, StudyFolder, StudySummary

app = typer.Typer(add_completion=False)
console = Console()

ROOT = Path(__file__).resolve().parent.parent
TUNING_SEED = 100  # the searches' seed: disjoint from the reporting seeds 0..n-1
ABLATION_PRESET = "pcd-ablation"
# The methods comparison: the product's default methods and the authors' released code.
METHOD_ENTRIES: list[str | dict[str, Any]] = [
    "ce",
    "kd",
    "dkd",
    "pcd",
    {"name": "pcd released", "method": "pcd", "fixed": {"schedule": "released"}},
]


@dataclass
class Sizes:
    train_size: int  # images taken from the 60k training set (train + val)
    test_size: int  # test images (0 = all 10k)
    val_fraction: float
    epochs: int
    teacher_epochs: int
    batch_size: int
    seeds: int
    trials: int  # search trials per tuned entry (the same for every entry)


FULL = Sizes(10000, 0, 0.2, 12, 10, 128, 5, 12)
QUICK = Sizes(600, 500, 0.2, 1, 1, 128, 2, 2)


# ---------------------------------------------------------------------------------- data
def _write_idx(path: Path, array: np.ndarray) -> None:
    array = np.ascontiguousarray(array, dtype=np.uint8)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as f:
        f.write(struct.pack(">I", 0x800 | array.ndim))
        f.write(struct.pack(">" + "I" * array.ndim, *array.shape))
        f.write(array.tobytes())
    tmp.replace(path)


def stratified_subset(labels: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """``size`` indices with (nearly) equal counts per class, sorted."""
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    picked = []
    for i, c in enumerate(classes):
        members = rng.permutation(np.flatnonzero(labels == c))
        take = size // len(classes) + (1 if i < size % len(classes) else 0)
        picked.append(members[:take])
    return np.sort(np.concatenate(picked))


def prepare_data(out: Path, source: Path | None, sizes: Sizes) -> dict[str, Any]:
    """Write the train subset (and test set) as IDX files under ``out``; returns their sizes."""
    meta_path = out / "meta.json"
    want = {"source": str(source), "train_size": sizes.train_size, "test_size": sizes.test_size}
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if {k: meta.get(k) for k in want} == want and "test_counts" in meta:
            return meta
    out.mkdir(parents=True, exist_ok=True)
    train = load_idx_dataset("fashion_mnist", "train", source)
    test = load_idx_dataset("fashion_mnist", "test", source)
    tr_idx = stratified_subset(train.labels.numpy(), min(sizes.train_size, len(train)))
    te_idx = (
        stratified_subset(test.labels.numpy(), sizes.test_size)
        if 0 < sizes.test_size < len(test)
        else np.arange(len(test))
    )
    _write_idx(out / "train-images-idx3-ubyte", train.images.numpy()[tr_idx, 0])
    _write_idx(out / "train-labels-idx1-ubyte", train.labels.numpy()[tr_idx])
    _write_idx(out / "t10k-images-idx3-ubyte", test.images.numpy()[te_idx, 0])
    _write_idx(out / "t10k-labels-idx1-ubyte", test.labels.numpy()[te_idx])
    meta = {
        **want,
        "source_train": len(train),
        "source_test": len(test),
        "train_subset": len(tr_idx),
        "test": len(te_idx),
        "class_names": train.class_names,
        "test_counts": np.bincount(test.labels.numpy()[te_idx], minlength=10).tolist(),
    }
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    return meta


# ------------------------------------------------------------------------------- studies
@dataclass
class Ran:
    """A comparison study of the report: its summary and what this invocation trained."""

    name: str
    summary: StudySummary
    trained: int  # search trials and seed runs trained by this invocation
    seconds: float  # this invocation's wall time for the study

    @property
    def result(self) -> ComparisonResult:
        assert self.summary.comparison is not None
        return self.summary.comparison


def report_spec(
    name: str,
    sizes: Sizes,
    data_dir: Path,
    student: str,
    *,
    teacher: Path | None = None,
    teacher_arch: str | None = None,
    preset: str | None = None,
) -> tuple[StudySpec, dict[str, Path]]:
    """A comparison study of the report, as `pcd compare` builds it, with the report's
    val fraction, batch size and tuning seed."""
    inputs = ComparisonInputs(
        student=student,
        methods=METHOD_ENTRIES,
        preset=preset,
        data="fashion_mnist",
        data_root=data_dir,
        teacher=teacher,
        teacher_arch=teacher_arch,
        teacher_epochs=sizes.teacher_epochs,
        seeds=sizes.seeds,
        trials=sizes.trials,
        epochs=sizes.epochs,
        name=f"report-{name}",
    )
    spec, roots = comparison_spec(inputs)
    overrides = {
        "data.val_fraction": sizes.val_fraction,
        "training.batch_size": sizes.batch_size,
        "seed": TUNING_SEED,
    }
    return parse_spec(spec.model_dump(mode="json"), source=name, overrides=overrides), roots


def _runs_done(folder: StudyFolder) -> int:
    state = folder.read_state()
    if state is None:
        return 0
    trials = sum(len(s.trials) for s in state.searches.values())
    return trials + sum(len(v) for v in state.seed_results.values())


def run_report_study(
    name: str, spec: StudySpec, roots: dict[str, Path], folder: Path, settings: RunnerSettings
) -> Ran:
    """Run (or resume) one comparison; a finished one is read back."""
    study = StudyFolder(folder)
    started, before = time.perf_counter(), _runs_done(study)
    summary = study.read_summary()
    if summary is None:
        console.print(f"[bold]comparison {name}[/bold]: {len(spec.comparison.entries)} entries")
        summary = run_comparison_spec(
            spec,
            folder,
            replace(settings, **roots),
            on_phase=lambda p: console.print(f"[dim]{name}: {p} ...[/dim]"),
        )
    trained = _runs_done(study) - before
    return Ran(name, summary, trained, time.perf_counter() - started)


def teacher_artifact(ran: Ran) -> Path:
    """The teacher the methods study trained (the ablation loads it)."""
    state = StudyFolder(ran.summary.study_dir).read_state()
    assert state is not None and state.teacher is not None, "the study trained no teacher"
    return Path(state.teacher)


def teacher_summary(artifact: Path) -> dict[str, Any]:
    _, info = load_teacher(artifact)
    model = build_model(info.arch, info.num_classes, info.in_channels, info.image_size)
    return {
        "arch": info.arch,
        "epochs": info.epochs,
        "val_top1": info.val_top1,
        "test_top1": info.test_top1,
        "params": count_parameters(model),
    }


# ------------------------------------------------------------------------------ markdown
def _options_text(options: dict[str, Any]) -> str:
    parts = [f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in options.items()]
    return ", ".join(parts) or "defaults"


def _tuning_text(entry: EntryResult) -> str:
    return f"searched, {entry.trials} trials" if entry.trials else entry.tuning


def _delta_points(entry: EntryResult) -> str:
    """The paired difference in prose: points, interval, seeds ahead."""
    d = entry.vs_reference
    assert d is not None
    ci = "(no interval)" if d.ci95 is None else f"± {d.ci95:.2f}"
    return f"{d.mean:+.2f} {ci} points, ahead on {d.wins} of {d.n} seeds"


def _hard_delta(entry: EntryResult, ref: EntryResult) -> str:
    if entry is ref or not entry.hard_top1 or not ref.hard_top1:
        return "-"
    d = paired_difference(entry.hard_top1, ref.hard_top1)
    ci = "no interval" if math.isnan(d.ci95) else f"± {d.ci95:.2f}"
    return f"{d.mean:+.2f} {ci}"


def comparison_table(result: ComparisonResult) -> list[str]:
    """One row per entry: options, test top-1 (best-on-val and last), hard classes, the
    paired difference to the reference and its verdict."""
    ref = result.entry(result.reference)
    lines = [
        f"| entry | options (tuning) | test top-1 % best-on-val | last epoch | hard classes % "
        f"| Δ vs {result.reference} ± 95 % CI | hard-class Δ | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in result.entries:
        verdict = "reference" if e.vs_reference is None else e.vs_reference.verdict
        delta = "reference" if e.vs_reference is None else delta_text(e)
        lines.append(
            f"| {e.name} | {_options_text(e.options)} ({_tuning_text(e)}) "
            f"| {format_mean_std(e.test_top1_best_val)} | {format_mean_std(e.test_top1_last)} "
            f"| {format_mean_std(e.hard_top1)} "
            f"| {delta} | {_hard_delta(e, ref)} | {verdict} |"
        )
    return lines


def ablation_lines(result: ComparisonResult, questions: dict[str, str]) -> list[str]:
    """One line per ablation entry: the part of PCD it tests, the difference, the reading."""
    lines = []
    for e in result.entries:
        if e.vs_reference is None:
            continue
        question = questions.get(e.name, e.name)
        lines.append(
            f"- *{question}* — {e.name} − {result.reference}: {_delta_points(e)} → "
            f"{ablation_reading(e, result.reference)}."
        )
    return lines


def plainly(ablation: ComparisonResult, questions: dict[str, str]) -> str:
    """The ablation in one sentence: which parts of PCD clearly help, which make no clear
    difference and which clearly hurt on this data."""
    groups: dict[str, list[str]] = {"help": [], "same": [], "hurt": []}
    for e in ablation.entries:
        if e.vs_reference is None or e.name not in questions:
            continue
        part = f"{questions[e.name].split(' (')[0]} ({e.name})"
        key = "help" if _clearly(e, worse=True) else "hurt" if _clearly(e, worse=False) else "same"
        groups[key].append(part)
    return (
        f"**Plainly, on this data:** what clearly helps: {'; '.join(groups['help']) or 'none'}. "
        f"No clear difference (within the seeds' noise): {'; '.join(groups['same']) or 'none'}. "
        f"Clearly better when changed: {'; '.join(groups['hurt']) or 'none'}."
    )


def headline(methods: ComparisonResult, ablation: ComparisonResult) -> list[str]:
    ref = methods.entry(methods.reference)
    best = max(methods.entries, key=lambda e: e.best_val if e.best_val is not None else -1.0)
    lines = [
        f"- Methods, each tuned on val with the same budget ({ref.trials} trials) and sampler, "
        f"{methods.seeds} seeds; {methods.reference} (tuned: {_options_text(ref.options)}) "
        f"reaches {format_mean_std(ref.test_top1_best_val)} % test top-1 at its best-on-val epoch.",
        f"- Highest val accuracy of a search (the selection criterion): **{best.name}** "
        f"({best.best_val:.2f} % val).",
    ]
    for e in methods.entries:
        if e.vs_reference is not None:
            verdict = e.vs_reference.verdict
            lines.append(
                f"- {e.name} − {methods.reference}: {_delta_points(e)} (95 % CI of the paired "
                f"difference) → **{verdict}**"
            )
    lines.append(
        f"- PCD taken apart (the `{ABLATION_PRESET}` comparison, {ablation.seeds} seeds). "
        + plainly(ablation, preset_questions(ABLATION_PRESET))
    )
    return lines


def _clearly(entry: EntryResult, *, worse: bool) -> bool:
    d = entry.vs_reference
    if d is None or d.ci95 is None or abs(d.mean) <= d.ci95:
        return False
    return d.mean < 0 if worse else d.mean > 0


def search_lines(ran: Ran) -> list[str]:
    """Every search trial of a study: its options and best-epoch val accuracy; the chosen
    one (the highest val) in bold."""
    lines = ["| entry | trial options | val top-1 % |", "|---|---|---|"]
    for e in ran.result.entries:
        rows = [t for t in ran.summary.trials if t.entry == e.name]
        for t in sorted(rows, key=lambda t: -(t.best or 0.0)):
            config = {k: v for k, v in t.config.items() if k in e.options}
            text, val = _options_text(config), "-" if t.best is None else f"{t.best:.2f}"
            if t.best is not None and t.best == e.best_val:
                text, val = f"**{text}**", f"**{val}**"
            lines.append(f"| {e.name} | {text} | {val} |")
    return lines


def _machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "os": platform.platform(),
    }


def _other_benches() -> list[str]:
    """The other bench scripts' results: their committed JSON where there is one, else the
    last measured figures quoted from the README (not re-run by make report)."""
    return [
        "## Other benchmarks",
        "",
        *_search_bench_lines(),
        *_api_bench_lines(),
        *_gpu_lines(),
        *_cpu_lines(),
    ]


def _search_bench_lines() -> list[str]:
    """bench/search_bench.py's committed result."""
    lines: list[str] = []
    search = ROOT / "bench" / "results" / "search_bench.json"
    if search.is_file():
        d = json.loads(search.read_text())
        lines += [
            "### Search strategies (`bench/search_bench.py`, committed `bench/results/"
            "search_bench.json`)",
            "",
            f"Digits, 48-point PCD space; grid best val top-1 {d['grid_best']:.2f} %, "
            f"budget {d['budget']} trial-epochs. Trial-epochs each run needed to come within "
            "0.5 points of the grid's best:",
            "",
            "| strategy | runs | trial-epochs to reach (each run) |",
            "|---|---|---|",
        ]
        for name, s in d["strategies"].items():
            reach = ", ".join(
                "never" if r is None else f"{r} ({r / d['budget']:.0%})" for r in s["reach"]
            )
            lines.append(f"| {name} | {len(s['reach'])} | {reach} |")
        oh = sorted(d.get("overhead_s", []))
        if oh:
            lines += [
                "",
                f"Scheduling overhead per trial: median {statistics.median(oh):.2f} s, "
                f"p90 {oh[int(0.9 * (len(oh) - 1))]:.2f} s over {len(oh)} trials; "
                f"peak memory of a study PSS {d['peak_pss'] / 2**30:.2f} GiB.",
            ]
        if (ROOT / "bench" / "results" / "search_bench.png").is_file():
            lines += ["", "![search strategies](results/search_bench.png)"]
        lines.append("")
    return lines


def _api_bench_lines() -> list[str]:
    """bench/api_bench.py's committed result."""
    lines: list[str] = []
    api = ROOT / "bench" / "results" / "api_bench.json"
    if api.is_file():
        d = json.loads(api.read_text())
        lines += [
            "### REST API (`bench/api_bench.py`, committed `bench/results/api_bench.json`)",
            "",
            f"{d['clients']} concurrent clients for {d['seconds']:.0f} s each on loopback, one "
            "uvicorn worker, client and server on the same 2 cores:",
            "",
            "| request | req/s | p50 ms | p99 ms | server CPU ms/request |",
            "|---|---|---|---|---|",
        ]
        for label, key in (
            ("GET /v1/studies/{id}", "get_study"),
            ("POST validate_only", "post_validate_only"),
        ):
            r = d[key]
            lines.append(
                f"| {label} | {r['req_per_s']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
                f"{r['server_cpu_ms_per_request']:.2f} |"
            )
        lines += [
            "",
            f"Submission to the first trial running: {d['submission_to_first_trial_s']:.1f} s "
            "(warm local Ray, stored teacher, the API's warm driver).",
            "",
        ]
    return lines


def _gpu_lines() -> list[str]:
    """bench/gpu_check.py's committed H100 result."""
    lines: list[str] = []
    gpu = ROOT / "bench" / "results" / "gpu_check_h100.json"
    if gpu.is_file():
        head = json.loads(gpu.read_text())["headline"]
        lines += [
            "### One H100 (`bench/gpu_check.py`, committed `bench/results/gpu_check_h100.json`)",
            "",
            "Training throughput, resnet32x4 -> resnet8x4, bf16 autocast, channels_last "
            "(images/s):",
            "",
        ]
        batches = [
            k for k, v in head.items() if k.startswith("throughput batch") and isinstance(v, dict)
        ]
        methods = list(head[batches[0]]["img_s"]) if batches else []
        lines += ["| batch | " + " | ".join(methods) + " | pcd S=3 / kd |"]
        lines += ["|---|" + "---|" * (len(methods) + 1)]
        for key in batches:
            row = head[key]
            lines.append(
                f"| {key.split()[-1]} | "
                + " | ".join(f"{row['img_s'][m]:,.0f}" for m in methods)
                + f" | {row['pcd3_over_kd']:.2f} |"
            )
        lines += ["", "Loss alone, forward+backward, ratio to `kd_loss`:", ""]
        for key in (
            k for k, v in head.items() if k.startswith("loss_bench") and isinstance(v, dict)
        ):
            ratios = head[key]["ratio_to_kd"]
            lines.append(
                f"- {key.removeprefix('loss_bench ')}: "
                + ", ".join(f"{m} {v:.1f}x" for m, v in ratios.items() if m != "kd_loss")
            )
        lines.append("")
    return lines


def _cpu_lines() -> list[str]:
    """The CPU loss and step figures, quoted from README.md's Measured section."""
    lines: list[str] = []
    lines += [
        "### Loss and training step on the CPU (last measured; quoted from README.md)",
        "",
        "`bench/loss_bench.py` and `bench/train_bench.py` print tables and write no result "
        "file; `make report` does not rerun them. Their last measured figures, as recorded in "
        "the README:",
        "",
    ]
    readme = (ROOT / "README.md").read_text().splitlines()
    starts = [i for i, line in enumerate(readme) if line.startswith("## Measured")]
    if not starts:
        raise SystemExit("error: README.md has no '## Measured' section to quote")
    block: list[str] = []
    for line in readme[starts[0] + 1 :]:
        if line.startswith("## ") or line.startswith("On one NVIDIA"):
            break
        if line.startswith("- Loss") or line.startswith("- Training"):
            block.append(line)
        elif block and line.startswith("  ") and block[-1] != "":
            block.append(line)
        elif block and block[-1] != "":
            block.append("")
    return [*lines, *block, ""]


# -------------------------------------------------------------------------------- report
CAVEATS = (
    "Differences are paired by seed (the runs of a seed share the data split, the batch order "
    "and the initialisation: common random numbers), so each interval is the 95 % CI of the "
    "per-seed differences (t distribution, n − 1 degrees of freedom). An interval that "
    "contains 0 means the data do not separate the two at this scale. The verdicts are not "
    "corrected for multiple comparisons (at 95 %, about one in twenty comparisons of equal "
    "methods reads as clear). Caveats: one small student/teacher pair, a 10k-image subset, "
    "searches of a few trials on one seed, and the ablations inherit PCD's tuned options "
    "instead of being tuned themselves."
)


def _setup_lines(
    meta: dict[str, Any],
    sizes: Sizes,
    student: str,
    teacher: dict[str, Any],
    studies: list[Ran],
    wall: dict[str, Any],
) -> list[str]:
    machine = _machine()
    training = [x for x in wall["invocations"] if x["trained"] > 0]
    n_train = meta["train_subset"]
    n_val = round(n_train * sizes.val_fraction)
    source = (
        "Debian's `dataset-fashion-mnist`"
        if meta["source"] == "None"
        else f"the IDX files in `{meta['source']}`"
    )
    whole = " (the whole test set)" if meta["test"] == meta["source_test"] else " (a subset)"
    per_study = "; ".join(f"{r.name} {r.seconds / 60:.1f} min ({r.trained} runs)" for r in studies)
    return [
        "## Setup",
        "",
        f"- Generated {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} by `make report` "
        "(`bench/report.py`, a thin user of `service.comparison`: the code `pcd compare` runs).",
        f"- Machine: {machine['cpu']}, {machine['cores']} cores, CPU only; Python "
        f"{machine['python']}, torch {machine['torch']}; a local Ray of {wall['workers']} CPUs, "
        "one per trial or seed run (1 thread each).",
        f"- Wall time: the `make report` invocation(s) that trained runs took "
        f"**{sum(x['seconds'] for x in training) / 60:.1f} min** in all ({len(training)} "
        f"invocation(s), {sum(x['trained'] for x in training)} search trials and seed runs); "
        f"this invocation {wall['total'] / 60:.1f} min ({per_study}). The machine may be shared "
        "with other jobs, so these times are upper bounds.",
        f"- Data: Fashion-MNIST from {source} ({meta['source_train']} train / "
        f"{meta['source_test']} test images). A stratified subset of **{n_train}** training "
        f"images (for CPU time), split {n_train - n_val} train / {n_val} val (stratified, data "
        f"seed 0); test: **{meta['test']}** images{whole}. No augmentation (the data set's "
        "default).",
        f"- Teacher: `{teacher['arch']}` ({teacher['params']:,} parameters), CE, "
        f"{teacher['epochs']} epochs, trained once by the methods study and loaded by the "
        f"ablation: val {teacher['val_top1']:.2f} %, test {teacher['test_top1']:.2f} %. Hard "
        f"classes (the 20 % on which it is least confident on val): "
        f"{', '.join(studies[0].result.hard_class_names) or '-'}.",
        f"- Student: `{student}` ({_student_params(student):,} parameters), {sizes.epochs} "
        f"epochs, batch {sizes.batch_size}, SGD lr 0.05 (momentum 0.9, wd 5e-4, ×0.1 at "
        "62.5/75/87.5 % of the epochs). Teacher logits come from a prefilled logit bank.",
        f"- Budget: {sizes.trials} search trials per tuned entry (Optuna TPE, every trial the "
        f"whole {sizes.epochs} epochs, tuning seed {TUNING_SEED}); {sizes.seeds} reporting "
        f"seeds (0..{sizes.seeds - 1}) per entry.",
        "",
        "### Selection protocol",
        "",
        "1. Each tuned entry searches its space (the method's default comparison space, "
        "`search_spaces/methods/`, with the entry's fixed options) with the same number of "
        "trials and the same sampler; the trial with the highest best-epoch **val** accuracy "
        "gives its options.",
        "2. Every entry is trained with the reporting seeds. The model of each run is its "
        "best-on-val epoch; test accuracy is read only for that epoch and for the last epoch. "
        "Nothing is selected on test.",
        "3. The ablations (`tuned_from`) take PCD's tuned options and change one; ce has "
        "nothing to tune.",
        "",
    ]


def _student_params(student: str) -> int:
    return count_parameters(build_model(student, 10, 1, 28))


def _plot(ran: Ran, img: Path, name: str) -> str:
    """The study's comparison plot, drawn again (the code's current drawing) and copied."""
    plot = plot_comparison(ran.result, StudyFolder(ran.summary.study_dir))
    shutil.copyfile(plot, img / f"{name}.png")
    return f"![{name}](results/{name}.png)"


def _methods_section(methods: Ran, img: Path) -> list[str]:
    return [
        "## 1. Methods, each tuned with the same budget",
        "",
        f"`pcd compare --methods ce,kd,dkd,pcd` plus the authors' released code (`pcd "
        f"released`, tuned the same way). Mean ± std over {methods.result.seeds} seeds; Δ: "
        "the entry minus the reference, paired by seed.",
        "",
        *comparison_table(methods.result),
        "",
        _plot(methods, img, "methods"),
        "",
    ]


def _ablation_section(ablation: Ran, img: Path) -> list[str]:
    return [
        "## 2. PCD taken apart (the shipped `pcd-ablation` comparison)",
        "",
        "`pcd compare --preset pcd-ablation` (or a study's `comparison: {preset: "
        "pcd-ablation}`): PCD at S=3 tuned with the budget; S=1, 2, 5, weighting=none and "
        "ranking=teacher/none each take PCD's tuned options and change one part; KD is tuned "
        "at PCD's cross-entropy weight of 1, so that a difference to it is the PCD term's, "
        "not the CE weight's; ce is the student alone.",
        "",
        plainly(ablation.result, preset_questions(ABLATION_PRESET)),
        "",
        "Each part, read from its paired difference to PCD:",
        "",
        *ablation_lines(ablation.result, preset_questions(ABLATION_PRESET)),
        "",
        *comparison_table(ablation.result),
        "",
        _plot(ablation, img, "ablation"),
        "",
        CAVEATS,
        "",
    ]


def _searches_section(methods: Ran, ablation: Ran) -> list[str]:
    return [
        "### Searches (best-epoch val top-1 %, the chosen trial in bold)",
        "",
        "#### Methods",
        "",
        *search_lines(methods),
        "",
        "#### PCD taken apart",
        "",
        *search_lines(ablation),
        "",
        "## The same on your data",
        "",
        "```sh",
        "pcd compare --data image_folder --data-root ~/my-images --student cnn_tiny \\",
        "    --teacher-arch cnn_small --methods ce,kd,dkd,pcd --seeds 5 --trials 12",
        "pcd compare --data image_folder --data-root ~/my-images --student cnn_tiny \\",
        "    --teacher-arch cnn_small --preset pcd-ablation --seeds 5 --trials 12",
        "```",
        "",
    ]


def _report_json(
    meta: dict[str, Any],
    sizes: Sizes,
    student: str,
    teacher: dict[str, Any],
    studies: list[Ran],
    wall: dict[str, Any],
    quick: bool,
) -> dict[str, Any]:
    return {
        "quick": quick,
        "sizes": asdict(sizes),
        "data": meta,
        "teacher": teacher,
        "student": student,
        "machine": _machine(),
        "wall": wall,
        "studies": {
            r.name: {
                "study_dir": str(r.summary.study_dir),
                "trained": r.trained,
                "comparison": r.result.model_dump(mode="json"),
            }
            for r in studies
        },
        "headline": headline(studies[0].result, studies[1].result),
    }


def write_report(
    docs: Path,
    *,
    meta: dict[str, Any],
    sizes: Sizes,
    student: str,
    teacher: dict[str, Any],
    methods: Ran,
    ablation: Ran,
    wall: dict[str, Any],
    quick: bool,
) -> dict[str, Any]:
    """``DOCS/results.md``, its plots and ``DOCS/results/report.json``; the JSON."""
    img = docs / "results"
    img.mkdir(parents=True, exist_ok=True)
    report = _report_json(meta, sizes, student, teacher, [methods, ablation], wall, quick)
    lines = ["# Results: PCD against KD and DKD on Fashion-MNIST, and PCD taken apart", ""]
    if quick:
        lines += ["**QUICK SMOKE RUN: tiny data, 1 epoch; the numbers mean nothing.**", ""]
    lines += ["## Headline", "", *report["headline"], ""]
    lines += _methods_section(methods, img) + _ablation_section(ablation, img)
    lines += _setup_lines(meta, sizes, student, teacher, [methods, ablation], wall)
    lines += _searches_section(methods, ablation) + _other_benches()
    (docs / "results.md").write_text("\n".join(lines).rstrip() + "\n")
    if (ROOT / "bench" / "results" / "search_bench.png").is_file():
        shutil.copyfile(ROOT / "bench" / "results" / "search_bench.png", img / "search_bench.png")
    (img / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


# ---------------------------------------------------------------------------------- main
def _source(source: Path | None) -> Path | None:
    if source is None and not FASHION_MNIST_DEBIAN_DIR.is_dir():
        console.print(
            f"[red]Fashion-MNIST not found under {FASHION_MNIST_DEBIAN_DIR}: install Debian's "
            "dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or pass --source"
        )
        raise typer.Exit(1)
    return source


def _ledger(out: Path, started: float, trained: int) -> list[dict[str, Any]]:
    """Every invocation of the report on ``out``: when, how long, how many runs it trained."""
    path = out / "invocations.json"
    ledger = json.loads(path.read_text()) if path.is_file() else []
    seconds = time.perf_counter() - started
    ledger.append(
        {
            "started": datetime.fromtimestamp(time.time() - seconds, UTC).isoformat(),
            "seconds": seconds,
            "trained": trained,
        }
    )
    path.write_text(json.dumps(ledger, indent=1) + "\n")
    return ledger


@app.command()
def main(
    out: Path = typer.Option(ROOT / "runs" / "report", help="the studies (resumable)"),
    docs: Path = typer.Option(ROOT / "docs", help="where results.md and results/ go"),
    source: Path | None = typer.Option(
        None, help=f"folder of Fashion-MNIST IDX files (default: {FASHION_MNIST_DEBIAN_DIR})"
    ),
    workers: int = typer.Option(2, help="CPUs of the local Ray (one per trial or seed run)"),
    quick: bool = typer.Option(False, help="tiny smoke run: small subset, 1 epoch, 2 seeds"),
    student: str = typer.Option("cnn_tiny"),
    teacher_arch: str = typer.Option("cnn_small"),
) -> None:
    started = time.perf_counter()
    sizes = QUICK if quick else FULL
    if quick and out == ROOT / "runs" / "report":
        out = out / "quick"
    meta = prepare_data(out / "data", _source(source), sizes)
    console.print(f"data: {meta['train_subset']} train+val, {meta['test']} test images")
    settings = RunnerSettings(
        mlflow_local_dir=out / "mlflow", logit_bank_root=out / "logit_bank", num_cpus=workers
    )
    spec, roots = report_spec("methods", sizes, out / "data", student, teacher_arch=teacher_arch)
    methods = run_report_study("methods", spec, roots, out / "studies" / "methods", settings)
    artifact = teacher_artifact(methods)
    spec, roots = report_spec(
        "ablation", sizes, out / "data", student, teacher=artifact, preset=ABLATION_PRESET
    )
    ablation = run_report_study("ablation", spec, roots, out / "studies" / "ablation", settings)
    trained = methods.trained + ablation.trained
    wall = {
        "total": time.perf_counter() - started,
        "workers": workers,
        "invocations": _ledger(out, started, trained),
    }
    report = write_report(
        docs,
        meta=meta,
        sizes=sizes,
        student=student,
        teacher=teacher_summary(artifact),
        methods=methods,
        ablation=ablation,
        wall=wall,
        quick=quick,
    )
    for line in report["headline"]:
        console.print(line)
    console.print(
        f"wrote {docs / 'results.md'} in {wall['total'] / 60:.1f} min ({trained} runs trained)"
    )


if __name__ == "__main__":
    sys.exit(app())
