"""The results report: PCD's readings and ablations against KD and DKD on Fashion-MNIST.

    python bench/report.py [--out runs/report] [--docs docs] [--workers 2] [--quick]

Protocol (nothing is selected on test):
1. A stratified subset of Fashion-MNIST's 60k training images is written as IDX files under
   ``OUT/data`` (the full 10k test set is kept); 20 % of it is the val split.
2. A CNN teacher is trained on it (CE); its logits are cached once in a logit bank.
3. Tuning: each method family runs a small grid (temperature / loss weights) with the tuning
   seed(s); the grid point with the best mean best-epoch val accuracy is chosen.
4. Final: every compared configuration is rerun with ``--seeds`` seeds (model init; the data
   split and batch order are shared by all runs: common random numbers) and reported on test
   as mean ± std, at the best-on-val epoch and at the last epoch, plus the accuracy on the
   teacher's hard classes.
5. ``DOCS/results.md``, its plots (``DOCS/results/*.png``) and a JSON summary
   (``DOCS/results/report.json``) are written from the stored runs.

Every run is stored in its run folder ``OUT/runs/<label>-s<seed>/``; a rerun reads finished
runs instead of training them again (resumable). ``--quick`` is a tiny smoke version
(small subset, 1 epoch, 2 seeds, two grid points per family).
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
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pcd_core.compare import compare_methods, format_mean_std, mean_std, run_label
from pcd_core.data import (
    FASHION_MNIST_DEBIAN_DIR,
    DeviceLoader,
    load_dataset,
    load_idx_dataset,
    train_val_split,
)
from pcd_core.methods import METHODS
from pcd_core.models import build_model, count_parameters
from pcd_core.run_dir import RunDir
from pcd_core.stats import PairedDifference, paired_difference
from pcd_core.train import DataConfig, TrainConfig, load_teacher, train
from pcd_core.train.metrics import hard_classes, predict
from pcd_core.train.trainer import prefill_logit_bank

app = typer.Typer(add_completion=False)
console = Console()

ROOT = Path(__file__).resolve().parent.parent
TUNING_SEED_BASE = 100  # tuning seeds are disjoint from the reporting seeds 0..n-1

# ------------------------------------------------------------------------------ the design
# Tuning grids, per family. Every PCD ablation inherits the tuned (T, alpha) of pcd joint and
# changes one option (one-factor ablations); the schedules and standardisation are tuned.
GRIDS: dict[str, tuple[str, dict[str, Any], list[dict[str, Any]]]] = {
    # family: (method, fixed options, grid points)
    "kd": (
        "kd",
        {},
        [
            {"temperature": t, "ce_weight": c, "kd_weight": k}
            for t in (2.0, 4.0, 8.0)
            for c, k in ((0.1, 0.9), (1.0, 1.0))
        ],
    ),
    "dkd": (
        "dkd",
        {},
        [{"temperature": t, "beta": b} for t in (2.0, 4.0) for b in (2.0, 8.0)],
    ),
    "pcd joint": (
        "pcd",
        {"schedule": "joint"},
        [{"temperature": t, "alpha": a} for t in (2.0, 4.0) for a in (0.5, 1.0, 2.0)],
    ),
    "pcd phased": (
        "pcd",
        {"schedule": "phased"},
        [{"temperature": t, "alpha": a} for t in (2.0, 4.0) for a in (0.5, 1.0, 2.0)],
    ),
    "pcd released": (
        "pcd",
        {"schedule": "released"},
        [{"temperature": 4.0, "alpha": a} for a in (0.1, 0.3, 1.0)],
    ),
    "pcd standardised": (
        "pcd",
        {"schedule": "joint", "standardize": True},
        [{"temperature": 2.0, "alpha": a} for a in (1.0, 3.0, 9.0)],
    ),
}


def final_configs(best: dict[str, dict[str, Any]]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Every reported configuration: name -> (method, options), from the tuned options."""
    joint = best["pcd joint"]
    configs: dict[str, tuple[str, dict[str, Any]]] = {"ce": ("ce", {})}
    for family in GRIDS:
        configs[family] = (GRIDS[family][0], best[family])
    for ranking in ("teacher", "none"):
        configs[f"pcd ranking={ranking}"] = ("pcd", {**joint, "ranking": ranking})
    for weighting in _pcd_choices("weighting"):
        if weighting != "paper":
            configs[f"pcd weighting={weighting}"] = ("pcd", {**joint, "weighting": weighting})
    for stages in (1, 2, 4, 5):
        configs[f"pcd S={stages}"] = ("pcd", {**joint, "stages": stages})
    return configs


def _pcd_choices(option: str) -> list[str]:
    """The values the registry allows for a Literal option of pcd (every weighting, ...)."""
    field = METHODS["pcd"].options.model_fields[option]
    return list(field.annotation.__args__)  # type: ignore[union-attr]


def comparisons(stages_default: int) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(title, what it answers, [(row label, config name)]) for each table and plot."""
    s = stages_default
    return [
        (
            "Methods",
            "each method family tuned on val, then rerun over seeds",
            [(n, n) for n in ("ce", "kd", "dkd", "pcd joint", "pcd phased", "pcd released")],
        ),
        (
            "Schedule reading",
            "joint (all stages every step), phased (2S curriculum phases), released (the "
            "authors' public code: rescaled full-class KD); each tuned on val",
            [("joint", "pcd joint"), ("phased", "pcd phased"), ("released", "pcd released")],
        ),
        (
            "Ranking",
            "class priority of pcd joint (tuned T, alpha); none = class-index order",
            [
                ("abs_gap (default)", "pcd joint"),
                ("teacher", "pcd ranking=teacher"),
                ("none (without ranking)", "pcd ranking=none"),
            ],
        ),
        (
            "Group weighting",
            "every weighting the registry offers, on pcd joint (tuned T, alpha)",
            [
                (w + (" (default)" if w == "paper" else ""), _weighting_config(w))
                for w in _pcd_choices("weighting")
            ],
        ),
        (
            "Stages S",
            "S = 1..5 on pcd joint (tuned T, alpha at S=3)",
            [
                (
                    f"S={k}" + (" (default)" if k == s else ""),
                    "pcd joint" if k == s else f"pcd S={k}",
                )
                for k in range(1, 6)
            ],
        ),
        (
            "Logit standardisation",
            "pcd joint without and with standardisation (each tuned on val)",
            [("off", "pcd joint"), ("on", "pcd standardised")],
        ),
    ]


def _weighting_config(w: str) -> str:
    return "pcd joint" if w == "paper" else f"pcd weighting={w}"


@dataclass
class Sizes:
    train_size: int  # images taken from the 60k training set (train + val)
    test_size: int  # test images (0 = all 10k)
    val_fraction: float
    epochs: int
    teacher_epochs: int
    batch_size: int
    seeds: int
    tuning_seeds: int
    grid_points: int  # per family; 0 = the whole grid


FULL = Sizes(10000, 0, 0.2, 12, 10, 128, 5, 1, 0)
QUICK = Sizes(600, 500, 0.2, 1, 1, 128, 2, 1, 2)


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


# ---------------------------------------------------------------------------------- runs
@dataclass(frozen=True)
class Job:
    name: str  # config name (or family for tuning)
    method: str
    options: dict[str, Any]
    seed: int


@dataclass
class Env:
    runs: Path
    teacher: Path
    student: str
    data: DataConfig
    epochs: int
    batch_size: int
    bank: Path
    threads: int


def run_dir(env: Env, job: Job) -> RunDir:
    return RunDir(env.runs / f"{run_label(job.method, job.options)}-s{job.seed}")


def _run_job(env: Env, job: Job) -> dict[str, Any]:
    """One (config, seed) run through compare_methods; reads it back if already finished."""
    torch.set_num_threads(env.threads)
    started = time.perf_counter()
    done_before = run_dir(env, job).is_finished()
    (summary,) = compare_methods(
        env.runs,
        teacher=env.teacher,
        student=env.student,
        methods=[(job.method, job.options)],
        seeds=[job.seed],
        data=env.data,
        epochs=env.epochs,
        batch_size=env.batch_size,
        logit_bank=env.bank,
        reuse_finished=True,
    )
    seconds = time.perf_counter() - started
    stored = run_dir(env, job).read_summary()
    assert stored is not None, "compare_methods wrote no summary"
    timing = run_dir(env, job).path / "timing.json"  # this report's own file in the run folder
    trained = not done_before or not timing.is_file()
    if trained:
        timing.write_text(json.dumps({"seconds": seconds}))
    return {
        "job": asdict(job),
        "trained": trained,
        "seconds": json.loads(timing.read_text())["seconds"],
        "val_top1": summary.val_top1[0],
        "test_top1_best_val": summary.test_top1_best_val[0],
        "test_top1_last": summary.test_top1_last[0],
        "test_hard_top1": summary.test_hard_top1[0] if summary.test_hard_top1 else None,
        "best_epoch": summary.best_epochs[0],
        "test_per_class_best_val": stored["test"]["best_val"]["per_class"],
    }


def run_jobs(env: Env, jobs: list[Job], workers: int, title: str) -> list[dict[str, Any]]:
    """Run ``jobs`` (in ``workers`` processes when > 1) with a progress bar."""
    results: list[dict[str, Any]] = []
    columns = (
        TextColumn(f"[bold]{title}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("", total=len(jobs))
        if workers <= 1:
            for job in jobs:
                results.append(_run_job(env, job))
                progress.update(task, advance=1, description=f"{job.name} s{job.seed}")
        else:
            with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
                futures = {pool.submit(_run_job, env, job): job for job in jobs}
                for future in as_completed(futures):
                    job = futures[future]
                    results.append(future.result())
                    progress.update(task, advance=1, description=f"{job.name} s{job.seed}")
    order = {(j.name, j.seed, run_label(j.method, j.options)): i for i, j in enumerate(jobs)}
    results.sort(
        key=lambda r: order[
            (
                r["job"]["name"],
                r["job"]["seed"],
                run_label(r["job"]["method"], r["job"]["options"]),
            )
        ]
    )
    return results


def select(tuning: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per family: every grid point's mean val accuracy and the chosen (argmax) point."""
    families: dict[str, dict[str, Any]] = {}
    for r in tuning:
        family = r["job"]["name"]
        key = json.dumps(r["job"]["options"], sort_keys=True)
        point = families.setdefault(family, {"points": {}})["points"].setdefault(
            key, {"options": r["job"]["options"], "val_top1": []}
        )
        point["val_top1"].append(r["val_top1"])
    for fam in families.values():
        points = list(fam["points"].values())
        for p in points:
            p["mean_val_top1"] = statistics.mean(p["val_top1"])
        best = max(points, key=lambda p: p["mean_val_top1"])  # first wins ties: grid order
        fam["points"] = points
        fam["chosen"] = best["options"]
    return families


# ---------------------------------------------------------------------------------- stats
def paired(a: list[float], b: list[float]) -> dict[str, float]:
    """Paired difference a - b over seeds: mean, std, 95% CI half-width, wins of a."""
    return paired_difference(a, b).to_json()


def _verdict(d: dict[str, float], a: str, b: str) -> str:
    line = PairedDifference(**d).describe(a, b)  # type: ignore[arg-type]
    head, verdict = line.rsplit("→ ", 1)
    return f"{head}→ **{verdict}**"


# ---------------------------------------------------------------------------------- report
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


def _plot(path: Path, title: str, rows: list[tuple[str, dict[str, Any]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    labels = [label for label, _ in rows]
    for ax, key, what in (
        (axes[0], "test_top1_best_val", "test top-1 % (best-on-val epoch)"),
        (axes[1], "test_hard_top1", "test top-1 % on the hard classes"),
    ):
        values = [r[key] for _, r in rows]
        means = [mean_std(v).mean if v else float("nan") for v in values]
        stds = [mean_std(v).std if v else 0.0 for v in values]
        xs = list(range(len(rows)))
        ax.bar(xs, means, yerr=stds, capsize=4, color="C0", alpha=0.75)
        for x, v in zip(xs, values, strict=True):
            ax.plot([x] * len(v), v, "k.", ms=3)
        lo = min((min(v) for v in values if v), default=0.0)
        hi = max((max(v) for v in values if v), default=100.0)
        pad = max(0.5, (hi - lo) * 0.3)
        ax.set_ylim(max(0.0, lo - pad), min(100.0, hi + pad))
        ax.set_xticks(xs, labels, rotation=20, ha="right", fontsize=8)
        ax.set_ylabel(what, fontsize=8)
    fig.suptitle(f"{title}: mean ± std over seeds (dots: seeds)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _table(rows: list[tuple[str, dict[str, Any]]]) -> list[str]:
    out = [
        "| variant | n | val top-1 % | test top-1 % (best-on-val) | test top-1 % (last) "
        "| test hard-class % | best epoch |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, r in rows:
        out.append(
            f"| {label} | {len(r['test_top1_best_val'])} | {format_mean_std(r['val_top1'])} "
            f"| {format_mean_std(r['test_top1_best_val'])} "
            f"| {format_mean_std(r['test_top1_last'])} "
            f"| {format_mean_std(r['test_hard_top1'])} | "
            f"{statistics.mean(r['best_epoch']):.1f} |"
        )
    return out


def _hard_from_per_class(per_class: list[float], hard: list[int], counts: list[int]) -> float:
    """Accuracy over the samples of the ``hard`` classes from per-class accuracies (%)."""
    n = sum(counts[c] for c in hard)
    return sum(per_class[c] * counts[c] for c in hard) / max(1, n)


def _options_text(options: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(options.items())) or "defaults"


def _other_benches() -> list[str]:
    """The other bench scripts' results: their committed JSON where there is one, else the
    last measured figures quoted from the README (not re-run by make report)."""
    lines = ["## Other benchmarks", ""]
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


def write_report(
    docs: Path,
    *,
    meta: dict[str, Any],
    sizes: Sizes,
    env: Env,
    teacher_info: dict[str, Any],
    tuning: dict[str, dict[str, Any]],
    configs: dict[str, tuple[str, dict[str, Any]]],
    final: list[dict[str, Any]],
    wall: dict[str, float],
    quick: bool,
) -> dict[str, Any]:
    img = docs / "results"
    img.mkdir(parents=True, exist_ok=True)
    per: dict[str, dict[str, Any]] = {}
    for r in final:
        name = r["job"]["name"]
        p = per.setdefault(
            name,
            {
                "method": r["job"]["method"],
                "options": r["job"]["options"],
                "seeds": [],
                **{
                    k: []
                    for k in (
                        "val_top1",
                        "test_top1_best_val",
                        "test_top1_last",
                        "test_hard_top1",
                        "best_epoch",
                    )
                },
            },
        )
        p["seeds"].append(r["job"]["seed"])
        for k in ("val_top1", "test_top1_best_val", "test_top1_last", "best_epoch"):
            p[k].append(r[k])
        hard = r["test_hard_top1"]
        if hard is None:  # ce has no teacher: the same hard classes, from per-class accuracy
            hard = _hard_from_per_class(
                r["test_per_class_best_val"], teacher_info["hard_classes"], meta["test_counts"]
            )
        p["test_hard_top1"].append(hard)

    compute = sum(r["seconds"] for r in final) + wall.get("tuning_seconds", 0.0)
    ledger = wall["invocations"]
    training = [x for x in ledger if x["trained"] > 0]
    train_wall = sum(x["seconds"] for x in training)
    lines = ["# Results: PCD against KD and DKD on Fashion-MNIST", ""]
    if quick:
        lines += ["**QUICK SMOKE RUN: tiny data, 1 epoch; the numbers mean nothing.**", ""]
    stages_default = int(configs["pcd joint"][1].get("stages", 3))

    # headline
    head: list[str] = []
    ranked = sorted(per.items(), key=lambda kv: -statistics.mean(kv[1]["val_top1"]))
    best_name, best = ranked[0]
    head.append(
        f"- Highest mean val accuracy (the selection criterion) of all {len(per)} "
        f"configurations: **{best_name}**, val {format_mean_std(best['val_top1'])} %, test "
        f"{format_mean_std(best['test_top1_best_val'])} % (n={len(best['seeds'])})."
    )
    j = per["pcd joint"]["test_top1_best_val"]
    for other in ("kd", "dkd", "ce", "pcd phased", "pcd released"):
        if other in per:
            d = paired(j, per[other]["test_top1_best_val"])
            head.append(f"- {_verdict(d, 'pcd joint', other)}")
    jh, kh = per["pcd joint"]["test_hard_top1"], per["kd"]["test_hard_top1"]
    if jh and kh:
        head.append(
            f"- Hard classes: {_verdict(paired(jh, kh), 'pcd joint', 'kd')} "
            f"(test accuracy on the teacher's hard classes)."
        )
    joint_m = statistics.mean(per["pcd joint"]["test_top1_best_val"])
    phased_m = statistics.mean(per["pcd phased"]["test_top1_best_val"])
    head.append(
        f"- Schedule reading: joint {joint_m:.2f} % vs phased {phased_m:.2f} % on test "
        f"({'joint' if joint_m >= phased_m else 'phased'} higher by {abs(joint_m - phased_m):.2f}"
        " points; see the paired test above for whether that is more than seed noise)."
    )
    lines += ["## Headline", "", *head, ""]
    lines += [
        "### Every configuration against pcd joint (paired by seed)",
        "",
        "Test top-1 at the best-on-val epoch and on the hard classes: mean difference "
        "(configuration − pcd joint) ± the 95 % CI half-width, seeds where the configuration "
        "is ahead.",
        "",
        "| configuration | test top-1 Δ | ahead | hard-class Δ | verdict (test top-1) |",
        "|---|---|---|---|---|",
    ]
    ref = per["pcd joint"]
    for name, r in per.items():
        if name == "pcd joint":
            continue
        d = paired(r["test_top1_best_val"], ref["test_top1_best_val"])
        h = paired(r["test_hard_top1"], ref["test_hard_top1"])
        clear = not math.isnan(d["ci95"]) and abs(d["mean"]) > d["ci95"]
        verdict = ("better" if d["mean"] > 0 else "worse") if clear else "no clear difference"
        lines.append(
            f"| {name} | {d['mean']:+.2f} ± {d['ci95']:.2f} | {d['wins']}/{d['n']} "
            f"| {h['mean']:+.2f} ± {h['ci95']:.2f} | {verdict} |"
        )
    lines.append("")
    lines += [
        "Differences are paired by seed (all runs of a seed share the initialisation seed and "
        "the data batches), so the 95 % CI is that of the per-seed differences "
        "(t distribution, n − 1 degrees of freedom). A CI that contains 0 means the data do "
        "not separate the two methods at this scale. The verdicts are not corrected for "
        "multiple comparisons (at 95 %, about one in twenty comparisons of equal methods "
        "reads as 'clear'). Caveats: one small student/teacher pair, a 10k-image subset, "
        "tuning on one seed, and the ranking/weighting/S ablations inherit pcd joint's tuned "
        "(T, alpha) instead of being tuned themselves.",
        "",
    ]

    # setup
    tparams = count_parameters(build_model(teacher_info["arch"], 10, 1, 28))
    sparams = count_parameters(build_model(env.student, 10, 1, 28))
    n_train = meta["train_subset"]
    n_val = round(n_train * sizes.val_fraction)
    source_text = (
        "Debian's `dataset-fashion-mnist`"
        if meta["source"] == "None"
        else f"the IDX files in `{meta['source']}`"
    )
    lines += [
        "## Setup",
        "",
        f"- Generated {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} by `make report` "
        "(`bench/report.py`).",
        f"- Machine: {_machine()['cpu']}, {_machine()['cores']} cores, CPU only; Python "
        f"{_machine()['python']}, torch {_machine()['torch']}; runs in {wall['workers']} "
        "processes of 1 thread each.",
        f"- Wall time: the `make report` invocation(s) that trained the runs took "
        f"**{train_wall / 60:.1f} min** in all ({len(training)} invocation(s), "
        f"{sum(x['trained'] for x in training)} runs trained, teacher included); this "
        f"invocation {wall['total'] / 60:.1f} min ({wall['tuning_trained'] + wall['final_trained']}"
        f" runs trained, the rest read back). Summed wall time of the student runs "
        f"{compute / 60:.1f} min; teacher {(wall['teacher_seconds'] or 0) / 60:.1f} min. The "
        "machine is shared with other jobs, so these times are upper bounds.",
        f"- Data: Fashion-MNIST from {source_text} "
        f"({meta['source_train']} train / {meta['source_test']} test images). A stratified "
        f"subset of **{n_train}** training images is used (for CPU time), split "
        f"{n_train - n_val} train / {n_val} val (stratified, data seed 0); test: "
        f"**{meta['test']}** images"
        + (" (the whole test set)" if meta["test"] == meta["source_test"] else " (a subset)")
        + ". No augmentation.",
        f"- Teacher: `{teacher_info['arch']}` ({tparams:,} parameters), CE, "
        f"{sizes.teacher_epochs} epochs: val {teacher_info['val_top1']:.2f} %, test "
        f"{teacher_info['test_top1']:.2f} %. Hard classes (the 20 % on which the teacher is "
        f"least confident on val): {', '.join(teacher_info['hard_class_names'])}.",
        f"- Student: `{env.student}` ({sparams:,} parameters), {sizes.epochs} epochs, batch "
        f"{sizes.batch_size}, SGD lr 0.05 (momentum 0.9, wd 5e-4, ×0.1 at 62.5/75/87.5 % of "
        "the epochs). Teacher logits come from a prefilled logit bank (fp16).",
        f"- Seeds: tuning with {sizes.tuning_seeds} seed(s) "
        f"({TUNING_SEED_BASE}..), reporting with {sizes.seeds} seeds (0..{sizes.seeds - 1}).",
        "",
        "### Selection protocol",
        "",
        "1. Each family below runs its grid; the point with the highest best-epoch **val** "
        "accuracy is chosen (ties: the first in grid order).",
        "2. Each compared configuration is rerun with the reporting seeds. The model of each "
        "run is its best-on-val epoch; test accuracy is read only for that epoch and for the "
        "last epoch. Nothing is selected on test.",
        "3. PCD's ranking, weighting and S ablations reuse the tuned (T, alpha) of pcd joint "
        "and change one option; ce has nothing to tune.",
        "",
        "### Tuning (val top-1 %, chosen point in bold)",
        "",
        "| family | grid point | val top-1 % | n |",
        "|---|---|---|---|",
    ]
    for family, fam in tuning.items():
        for p in fam["points"]:
            chosen = p["options"] == fam["chosen"]
            txt = _options_text(p["options"])
            val = f"{p['mean_val_top1']:.2f}"
            if chosen:
                txt, val = f"**{txt}**", f"**{val}**"
            lines.append(f"| {family} | {txt} | {val} | {len(p['val_top1'])} |")
    lines += ["", "### Reported configurations", ""]
    for name, (method, options) in configs.items():
        lines.append(f"- **{name}**: `{method}` {_options_text(options)}")
    lines.append("")

    # comparisons
    lines += [
        "## Comparisons",
        "",
        "Mean ± sample std over seeds; n = number of seeds. `best epoch` is the mean "
        "best-on-val epoch.",
        "",
    ]
    summary_cmp = []
    for i, (title, what, rows) in enumerate(comparisons(stages_default), 1):
        present = [(label, per[name]) for label, name in rows if name in per]
        slug = f"{i}-" + title.lower().replace(" ", "-")
        _plot(img / f"{slug}.png", title, present)
        lines += [f"### {i}. {title}", "", what + ".", "", *_table(present), ""]
        lines += [f"![{title}](results/{slug}.png)", ""]
        summary_cmp.append({"title": title, "rows": [[label, name] for label, name in rows]})

    lines += _other_benches()
    (docs / "results.md").write_text("\n".join(lines).rstrip() + "\n")
    if (ROOT / "bench" / "results" / "search_bench.png").is_file():
        shutil.copyfile(ROOT / "bench" / "results" / "search_bench.png", img / "search_bench.png")
    report = {
        "quick": quick,
        "sizes": asdict(sizes),
        "data": meta,
        "teacher": teacher_info,
        "student": env.student,
        "machine": _machine(),
        "wall": wall,
        "tuning": tuning,
        "configs": {k: {"method": m, "options": o} for k, (m, o) in configs.items()},
        "results": per,
        "comparisons": summary_cmp,
        "headline": head,
    }
    (img / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def _teacher_info(env: Env, meta: dict[str, Any]) -> dict[str, Any]:
    """The teacher's accuracies and hard classes (computed as the trainer does, on val)."""
    model, info = load_teacher(env.teacher)
    data = load_dataset("fashion_mnist", "train", env.data.root)
    _, val_idx = train_val_split(data.labels, env.data.val_fraction, env.data.seed)
    loader = DeviceLoader(
        data, val_idx, 512, shuffle=False, augment=False, seed=0, device=torch.device("cpu")
    )
    logits, labels = predict(model, loader.epoch(0))
    hard = hard_classes(logits, labels, 10, 0.2).tolist()
    return {
        "arch": info.arch,
        "val_top1": info.val_top1,
        "test_top1": info.test_top1,
        "hard_classes": hard,
        "hard_class_names": [meta["class_names"][h] for h in hard],
    }


@app.command()
def main(
    out: Path = typer.Option(ROOT / "runs" / "report", help="run store (resumable)"),
    docs: Path = typer.Option(ROOT / "docs", help="where results.md and results/ go"),
    source: Path | None = typer.Option(
        None, help=f"folder of Fashion-MNIST IDX files (default: {FASHION_MNIST_DEBIAN_DIR})"
    ),
    workers: int = typer.Option(2, help="parallel run processes (1 thread each)"),
    quick: bool = typer.Option(False, help="tiny smoke run: small subset, 1 epoch, 2 seeds"),
    student: str = typer.Option("cnn_tiny"),
    teacher_arch: str = typer.Option("cnn_small"),
) -> None:
    started = time.perf_counter()
    sizes = QUICK if quick else FULL
    if quick:
        out = out / "quick" if out == ROOT / "runs" / "report" else out
    src = source
    if src is None and not FASHION_MNIST_DEBIAN_DIR.is_dir():
        console.print(
            f"[red]Fashion-MNIST not found under {FASHION_MNIST_DEBIAN_DIR}: install Debian's "
            "dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or pass --source"
        )
        raise typer.Exit(1)
    meta = prepare_data(out / "data", src, sizes)
    console.print(f"data: {meta['train_subset']} train+val, {meta['test']} test images")
    data = DataConfig(name="fashion_mnist", root=out / "data", val_fraction=sizes.val_fraction)

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    teacher_dir = out / "teacher"
    artifact = RunDir(teacher_dir).teacher
    teacher_trained = not artifact.is_file()
    if teacher_trained:
        t0 = time.perf_counter()
        console.print(f"training the teacher {teacher_arch} ({sizes.teacher_epochs} epochs)")
        train(
            TrainConfig(
                arch=teacher_arch,
                data=data,
                epochs=sizes.teacher_epochs,
                batch_size=sizes.batch_size,
            ),
            teacher_dir,
        )
        (teacher_dir / "timing.json").write_text(json.dumps({"seconds": time.perf_counter() - t0}))
    bank = out / "logit_bank"
    env = Env(out / "runs", artifact, student, data, sizes.epochs, sizes.batch_size, bank, 1)
    prefill_logit_bank(
        TrainConfig(
            arch=student,
            data=data,
            method="kd",
            teacher=artifact,
            epochs=sizes.epochs,
            batch_size=sizes.batch_size,
            logit_bank=bank,
        )
    )
    teacher_info = _teacher_info(env, meta)
    console.print(
        f"teacher: val {teacher_info['val_top1']:.2f} %, test {teacher_info['test_top1']:.2f} %"
        f", hard classes {teacher_info['hard_class_names']}"
    )

    # tuning
    tune_jobs = []
    for family, (method, fixed, grid) in GRIDS.items():
        points = grid[: sizes.grid_points] if sizes.grid_points else grid
        for point in points:
            for s in range(sizes.tuning_seeds):
                tune_jobs.append(Job(family, method, {**fixed, **point}, TUNING_SEED_BASE + s))
    tuned = run_jobs(env, tune_jobs, workers, "tuning")
    tuning = select(tuned)
    best = {family: fam["chosen"] for family, fam in tuning.items()}
    for family, options in best.items():
        console.print(f"tuned {family}: {_options_text(options)}")

    configs = final_configs(best)
    jobs = [
        Job(name, method, options, seed)
        for name, (method, options) in configs.items()
        for seed in range(sizes.seeds)
    ]
    final = run_jobs(env, jobs, workers, "final")
    wall = {
        "total": time.perf_counter() - started,
        "workers": workers,
        "tuning_trained": sum(r["trained"] for r in tuned),
        "tuning_seconds": sum(r["seconds"] for r in tuned),
        "final_trained": sum(r["trained"] for r in final),
        "teacher_seconds": json.loads((teacher_dir / "timing.json").read_text())["seconds"]
        if (teacher_dir / "timing.json").is_file()
        else None,
    }
    ledger_path = out / "invocations.json"
    ledger = json.loads(ledger_path.read_text()) if ledger_path.is_file() else []
    ledger.append(
        {
            "started": datetime.fromtimestamp(time.time() - wall["total"], UTC).isoformat(),
            "seconds": wall["total"],
            "trained": wall["tuning_trained"] + wall["final_trained"] + int(teacher_trained),
        }
    )
    ledger_path.write_text(json.dumps(ledger, indent=1) + "\n")
    wall["invocations"] = ledger
    report = write_report(
        docs,
        meta=meta,
        sizes=sizes,
        env=env,
        teacher_info=teacher_info,
        tuning=tuning,
        configs=configs,
        final=final,
        wall=wall,
        quick=quick,
    )
    for line in report["headline"]:
        console.print(line)
    console.print(
        f"wrote {docs / 'results.md'} in {wall['total'] / 60:.1f} min "
        f"({wall['tuning_trained'] + wall['final_trained']} runs trained)"
    )


if __name__ == "__main__":
    sys.exit(app())
