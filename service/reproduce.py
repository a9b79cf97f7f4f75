"""Reproducing a published table: ``pcd reproduce cifar100``.

Each (pair, method) is a fixed-configuration study (``search_spaces.reproduce.study_spec``)
run by the study runner (``run_study``) on the configured Ray (a cluster with
``PCD_RAY_ADDRESS``, else a local one): no search, the method's published defaults trained on
the whole training split over the seeds, test evaluated every epoch. Teachers are trained
first when absent (once per architecture, stored under the teacher root by name, reused by
every pair and method and by later runs). Studies run concurrently (threads of this driver
waiting on Ray); the first study of each teacher fills the shared teacher-logit bank before the
others start. A finished study is skipped on a rerun; an unfinished one resumes (finished
seeds are not trained again). The result is ``OUT/table.md`` and ``OUT/table.json``: ours
(mean ± std over seeds, best epoch and last epoch) beside the published numbers.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pcd_core.methods import needs_teacher
from pcd_core.run_dir import RunDir
from search_spaces.reproduce import METHOD_NAMES, Benchmark, Pair, study_spec
from search_spaces.schema import StudySpec
from service.study_files import StudyFolder, StudySummary, mlflow_store_uri

FOOTNOTES = [
    "best epoch: the highest test top-1 over the epochs of each run, which is what the "
    "literature reports as its number; it is selected on the test set, so it is optimistic.",
    "last epoch: test top-1 after the final epoch (no selection).",
    "The standard CIFAR-100 recipe has no validation split: every run trains on all 50,000 "
    "training images, so no held-out model selection is possible.",
    "ours: mean ± sample std over seeds (n = number of seeds); teacher: one run.",
    "published: best-epoch test top-1 as reported by the source (mean of runs); an empty cell "
    "means no number is published in the sources listed.",
]


class ReproduceError(ValueError):
    """Bad input (unknown pair or method, bad counts) or an unusable output folder."""


@dataclass
class ReproduceRequest:
    pairs: list[Pair]
    methods: list[str]
    seeds: int
    epochs: int
    teacher_epochs: int
    data_root: Path
    out: Path
    teacher_root: Path
    cpus: float = 1.0
    gpus: float = 0.0
    parallel: int = 0  # studies at once; 0: all


@dataclass
class TeacherRecord:
    arch: str
    path: str  # relative to the teacher root
    hash: str
    test_top1: float
    best_epoch_top1: float | None
    trained_now: bool


@dataclass
class StudyState:
    pair: Pair
    method: str
    spec: StudySpec
    folder: Path
    status: str = "pending"  # pending, skipped (finished before), running, done, failed
    error: str | None = None
    summary: StudySummary | None = None


def select(bench: Benchmark, pairs: str, methods: str) -> tuple[list[Pair], list[str]]:
    """Parse ``--pairs`` (comma-separated ids, or ``all``) and ``--methods``."""
    pair_ids = bench.pair_ids if pairs.strip() == "all" else _csv(pairs)
    unknown = [p for p in pair_ids if p not in bench.pair_ids]
    if unknown or not pair_ids:
        raise ReproduceError(
            f"unknown pair {', '.join(map(repr, unknown)) or '(none given)'}; valid pairs: "
            f"{', '.join(bench.pair_ids)} (or all)"
        )
    chosen = _csv(methods)
    bad = [m for m in chosen if m not in METHOD_NAMES]
    if bad or not chosen:
        raise ReproduceError(
            f"unknown method {', '.join(map(repr, bad)) or '(none given)'}; valid methods: "
            f"{', '.join(METHOD_NAMES)}"
        )
    return [bench.pair(p) for p in dict.fromkeys(pair_ids)], list(dict.fromkeys(chosen))


def _csv(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def teacher_relpath(bench: Benchmark, arch: str, epochs: int) -> str:
    """``cifar100/<arch>.pt`` (under the teacher root, as every teacher checkpoint of a study
    is) for the standard recipe, ``<arch>-e<N>.pt`` otherwise (a short-run teacher must never
    pass for a standard one)."""
    suffix = "" if epochs == bench.epochs else f"-e{epochs}"
    return f"{bench.benchmark}/{arch}{suffix}.pt"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _read_summary(folder: StudyFolder) -> StudySummary | None:
    try:
        return folder.read_summary()
    except (OSError, ValueError):
        return None


def _atomic_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str) + "\n")
    os.replace(tmp, path)


class Reproduction:
    """One ``pcd reproduce`` invocation."""

    def __init__(self, bench: Benchmark, request: ReproduceRequest, settings: Any) -> None:
        from service.settings import RunnerSettings

        self.bench = bench
        self.req = request
        self.out = request.out.resolve()
        self.studies_dir = self.out / "studies"
        self.settings: RunnerSettings = settings
        self.settings.data_root = request.data_root.resolve()
        self.settings.teacher_root = request.teacher_root.resolve()
        self.settings.logit_bank_root = self.out / "logit_banks"
        # one MLflow store for all the studies of the table
        self.settings.tracking_uri = settings.tracking_uri or mlflow_store_uri(self.out)
        self.teachers: dict[str, TeacherRecord] = {}
        self.studies: list[StudyState] = []
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ teachers
    def teacher_archs(self) -> list[str]:
        if not any(needs_teacher(m) for m in self.req.methods):
            return []
        return list(dict.fromkeys(p.teacher for p in self.req.pairs))

    def _teacher_file(self, arch: str) -> tuple[str, Path]:
        rel = teacher_relpath(self.bench, arch, self.req.teacher_epochs)
        return rel, self.settings.teacher_root / rel

    def _known_teacher(self, arch: str) -> TeacherRecord | None:
        """A stored teacher (verified), or None when it has to be trained."""
        from pcd_core.train import load_teacher

        rel, path = self._teacher_file(arch)
        if not path.is_file():
            return None
        _, info = load_teacher(path)  # verifies the content hash
        if info.arch != arch or info.dataset != self.bench.dataset:
            raise ReproduceError(
                f"{path} holds a {info.arch} teacher for {info.dataset}, not {arch} for "
                f"{self.bench.dataset}; move it away or use another --teacher-root"
            )
        if info.epochs != self.req.teacher_epochs:
            raise ReproduceError(
                f"{path} was trained for {info.epochs} epochs, not {self.req.teacher_epochs}; "
                "move it away or use another --teacher-root"
            )
        run = RunDir(self.out / "teacher_runs" / arch).read_summary() or {}
        best = (run.get("test") or {}).get("best_test_epoch", {}).get("top1")
        if run.get("teacher_hash") != info.content_hash:
            best = None  # that run did not produce this file
        return TeacherRecord(arch, rel, info.content_hash, info.test_top1, best, False)

    def load_teachers(self) -> list[str]:
        """Load (and verify) the stored teachers; returns the architectures still missing."""
        missing = []
        for arch in self.teacher_archs():
            record = self._known_teacher(arch)
            if record is None:
                missing.append(arch)
            else:
                self.teachers[arch] = record
        return missing

    def train_teachers(self, missing: list[str], on_update: Callable[[], None]) -> None:
        """Train the missing teachers (in parallel, on Ray) and store them by name."""
        import ray

        from pcd_core.train import TrainConfig
        from service.runner.remote import train_remote

        refs = {}
        for arch in missing:
            config = TrainConfig(
                data={
                    "name": self.bench.dataset,
                    "root": self.settings.data_root,
                    "val_fraction": 0.0,  # the standard recipe: all training images
                    "seed": 0,
                },
                arch=arch,
                epochs=self.req.teacher_epochs,
                seed=0,
                test_each_epoch=True,
            )
            refs[arch] = train_remote.options(
                num_cpus=self.req.cpus, num_gpus=self.req.gpus
            ).remote(config.model_dump(mode="json"), str(self.out / "teacher_runs" / arch))
        for arch, ref in refs.items():
            result = ray.get(ref)
            _, path = self._teacher_file(arch)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            shutil.copy2(result["teacher_artifact"], tmp)
            os.replace(tmp, path)
            record = self._known_teacher(arch)
            assert record is not None
            record.trained_now = True
            self.teachers[arch] = record
            on_update()

    def record_teachers(self) -> None:
        _atomic_json(self.out / "teachers.json", {a: t.__dict__ for a, t in self.teachers.items()})

    # ------------------------------------------------------------------ studies
    def plan(self) -> None:
        """The (pair, method) studies, with those finished before marked skipped."""
        self.studies = []
        for pair in self.req.pairs:
            for method in self.req.methods:
                teacher = self.teachers.get(pair.teacher)
                rel = teacher.path if teacher else self._teacher_file(pair.teacher)[0]
                spec = study_spec(
                    self.bench,
                    pair,
                    method,
                    epochs=self.req.epochs,
                    seeds=self.req.seeds,
                    teacher_checkpoint=rel,
                    teacher_hash=teacher.hash if teacher else None,
                    cpus=self.req.cpus,
                    gpus=self.req.gpus,
                )
                folder = self.studies_dir / f"{pair.id}__{method}"
                state = StudyState(pair, method, spec, folder)
                self._check_folder(state)
                self.studies.append(state)

    def _check_folder(self, state: StudyState) -> None:
        folder = StudyFolder(state.folder)
        try:
            saved = folder.read_state()
        except (OSError, ValueError):
            saved = None
        if saved is None:
            return
        ours = state.spec.model_dump(mode="json")
        if saved.spec != ours:
            old = saved.spec or {}
            was = (old.get("budget", {}).get("max_epochs"), old.get("promotion", {}).get("seeds"))
            now = (self.req.epochs, self.req.seeds)
            what = f"{was[0]} epochs and {was[1]} seeds, not {now[0]} and {now[1]}"
            if was == now:
                what = "another teacher or method configuration"
            raise ReproduceError(
                f"{state.folder} holds a run of {state.pair.id} {state.method} with {what}; "
                "use another --out"
            )
        summary = _read_summary(folder)
        if saved.finished and summary is not None:
            state.status, state.summary = "skipped", summary

    def needs_work(self) -> bool:
        """Anything to train (teachers or studies)? Decided without starting Ray."""
        for arch in self.teacher_archs():
            if not self._teacher_file(arch)[1].is_file():
                return True
        return any(s.status == "pending" for s in self.studies)

    def run_studies(self, on_update: Callable[[], None]) -> None:
        from service.runner.study import run_study

        pending = [s for s in self.studies if s.status == "pending"]
        # the first pending study of each teacher fills the shared logit bank; the others of
        # that teacher wait for it (else they would all compute the same logits at once)
        bank_ready: dict[str, threading.Event] = {}
        leaders: set[int] = set()
        for i, s in enumerate(pending):
            if needs_teacher(s.method) and s.pair.teacher not in bank_ready:
                bank_ready[s.pair.teacher] = threading.Event()
                leaders.add(i)

        def work(i: int, state: StudyState) -> None:
            event = bank_ready.get(state.pair.teacher)
            if event is not None and i not in leaders and needs_teacher(state.method):
                event.wait()

            def on_phase(phase: str) -> None:
                if phase == "promotion" and i in leaders and event is not None:
                    event.set()

            state.status = "running"
            on_update()
            try:
                result = run_study(state.spec, state.folder, self.settings, on_phase=on_phase)
                state.summary = result
                state.status = "done"
            except Exception as err:  # recorded, shown in the table; the others go on
                state.status, state.error = "failed", f"{type(err).__name__}: {err}"
            finally:
                if i in leaders and event is not None:
                    event.set()
                on_update()

        workers = self.req.parallel or max(1, len(pending))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="study")
        futures = [pool.submit(work, i, s) for i, s in enumerate(pending)]
        try:
            for f in futures:
                f.result()
        except BaseException:  # Ctrl-C: do not wait for the studies' threads
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()

    # ------------------------------------------------------------------ progress
    def epochs_done(self) -> tuple[int, int]:
        """(epochs trained, epochs planned) over every seed run of the planned studies."""
        done = total = 0
        for s in self.studies:
            for seed in range(self.req.seeds):
                total += self.req.epochs
                run = s.folder / "promotion" / f"best-s{seed}"
                if s.status == "skipped":
                    done += self.req.epochs
                else:
                    done += RunDir(run).epochs_done()
        return min(done, total), total

    def teacher_epochs_done(self) -> tuple[int, int]:
        archs = self.teacher_archs()
        total = len(archs) * self.req.teacher_epochs
        done = 0
        for arch in archs:
            if arch in self.teachers:
                done += self.req.teacher_epochs
            else:
                done += RunDir(self.out / "teacher_runs" / arch).epochs_done()
        return min(done, total), total

    # ------------------------------------------------------------------ table
    def table(self) -> dict[str, Any]:
        rows: list[dict[str, Any]] = []
        by_key = {(s.pair.id, s.method): s for s in self.studies}
        for pair in self.req.pairs:
            teacher = self.teachers.get(pair.teacher)
            if teacher is not None:
                rows.append(
                    {
                        "pair": pair.id,
                        "family": pair.family,
                        "method": "teacher",
                        "model": pair.teacher,
                        "config": {},
                        "ours": {
                            "best_epoch": _single(teacher.best_epoch_top1),
                            "last_epoch": _single(teacher.test_top1),
                        },
                        "published": _published(pair, "teacher"),
                        "status": "reused" if not teacher.trained_now else "trained",
                    }
                )
            for method in self.req.methods:
                s = by_key[(pair.id, method)]
                stats = s.summary.promotion.get("best") if s.summary else None
                ours = None
                if stats:
                    best = stats.get("best_epoch") or {}
                    ours = {
                        "best_epoch": {
                            "mean": best.get("mean"),
                            "std": best.get("std"),
                            "n": len(best.get("test_top1", [])),
                            "values": best.get("test_top1", []),
                            "epochs": best.get("epochs", []),
                        }
                        if best
                        else None,
                        "last_epoch": {
                            "mean": stats["mean"],
                            "std": stats["std"],
                            "n": stats["seeds"],
                            "values": stats["test_top1"],
                        },
                    }
                rows.append(
                    {
                        "pair": pair.id,
                        "family": pair.family,
                        "method": method,
                        "model": pair.student,
                        "config": s.spec.fixed_config(),
                        "config_source": self.bench.methods[method].source,  # type: ignore[index]
                        "pair_config_source": pair.options_source if method in pair.options else "",
                        "ours": ours,
                        "published": _published(pair, method),
                        "status": s.status,
                        "error": s.error,
                        "study_dir": str(s.folder),
                    }
                )
        return {
            "benchmark": self.bench.benchmark,
            "generated": datetime.now(UTC).isoformat(timespec="seconds"),
            "epochs": self.req.epochs,
            "teacher_epochs": self.req.teacher_epochs,
            "seeds": self.req.seeds,
            "standard_epochs": self.bench.epochs,
            "rows": rows,
            "sources": {k: v.model_dump() for k, v in self.bench.sources.items()},
            "method_sources": {k: v.source for k, v in self.bench.methods.items()},
            "footnotes": FOOTNOTES,
        }

    def write_table(self) -> dict[str, Any]:
        data = self.table()
        _atomic_json(self.out / "table.json", data)
        (self.out / ".table.md.tmp").write_text(render_markdown(data))
        os.replace(self.out / ".table.md.tmp", self.out / "table.md")
        return data


def _single(value: float | None) -> dict[str, Any] | None:
    if value is None:
        return None
    return {"mean": value, "std": None, "n": 1, "values": [value]}


def _published(pair: Pair, column: str) -> dict[str, Any] | None:
    number = pair.published.get(column)  # type: ignore[call-overload]
    return number.model_dump() if number is not None else None


def cell_text(stats: dict[str, Any] | None) -> str:
    if not stats or stats.get("mean") is None:
        return ""
    if stats.get("std") is None:
        return f"{stats['mean']:.2f}"
    return f"{stats['mean']:.2f} ± {stats['std']:.2f} (n={stats['n']})"


def _config_text(config: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in config.items())


def render_markdown(data: dict[str, Any]) -> str:
    """The table as Markdown, ours beside the published numbers, with footnotes."""
    run = f"{data['epochs']} epochs"
    if data["epochs"] != data["standard_epochs"]:
        run += f" (the standard recipe is {data['standard_epochs']}: not comparable)"
    lines = [
        f"# {data['benchmark'].upper()} reproduction",
        "",
        f"Test top-1 (%), {run}, {data['seeds']} seed(s); generated {data['generated']}.",
        "",
        "| pair | method | config | ours, best epoch¹ | ours, last epoch² | published¹ | source |",
        "|---|---|---|---|---|---|---|",
    ]
    notes: list[str] = []
    for row in data["rows"]:
        ours = row["ours"] or {}
        pub = row["published"]
        source = ""
        if pub:
            source = pub["source"]
            if pub.get("note"):
                notes.append(f"{row['pair']} {row['method']}: {pub['note']}")
                source += f" (note {len(notes)})"
        status = row["status"]
        tail = "" if status in ("done", "skipped", "trained", "reused") else f" [{status}]"
        lines.append(
            f"| {row['pair']} | {row['method']}{tail} | {_config_text(row['config'])} | "
            f"{cell_text(ours.get('best_epoch'))} | {cell_text(ours.get('last_epoch'))} | "
            f"{'' if not pub else format(pub['value'], '.2f')} | {source} |"
        )
    lines += ["", "Footnotes:", ""]
    lines += [f"{i}. {text}" for i, text in enumerate(data["footnotes"], start=1)]
    if notes:
        lines += ["", "Notes on published numbers:", ""]
        lines += [f"{i}. {text}" for i, text in enumerate(notes, start=1)]
    lines += ["", "Sources:", ""]
    lines += [f"- {key}: {s['title']} <{s['url']}>" for key, s in data["sources"].items()]
    lines += ["", "Method defaults:", ""]
    lines += [f"- {key}: {text}" for key, text in data["method_sources"].items()]
    per_pair = {
        f"{r['pair']} {r['method']}": r["pair_config_source"]
        for r in data["rows"]
        if r.get("pair_config_source")
    }
    if per_pair:
        lines += ["", "Per-pair settings:", ""]
        lines += [f"- {key}: {text}" for key, text in per_pair.items()]
    failed = [r for r in data["rows"] if r.get("error")]
    if failed:
        lines += ["", "Failed:", ""]
        lines += [f"- {r['pair']} {r['method']}: {r['error']}" for r in failed]
    return "\n".join(lines) + "\n"
