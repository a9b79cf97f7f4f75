"""A training run's folder: the one owner of its layout.

A run folder holds::

    metrics.jsonl   one JSON object per finished epoch (EpochMetrics), rewritten on resume
    last.pt         the exact-resume checkpoint of the last finished epoch
    best.pt         the best-on-val weights (absent when the run has no validation split)
    summary.json    written once the run has finished (RunSummary)
    teacher.pt      the hashed teacher artifact (teacher runs only: method ce)

Every reader and writer of these files (the trainer, the CLI, comparisons, benches, the
search trainable and the reproduction kit) goes through :class:`RunDir`, so a file name
appears here only. Imports only the standard library.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypedDict


class RunSummary(TypedDict):
    """``summary.json``: what a finished run selected and scored."""

    config: dict[str, Any]  # TrainConfig.model_dump(mode="json")
    best_epoch: int
    best_val_top1: float
    test: dict[str, dict[str, Any]]  # "best_val" / "last" / "best_test_epoch"
    teacher: dict[str, Any] | None  # the TeacherInfo of a student run's teacher
    teacher_artifact: str | None  # teacher runs: their artifact's path
    teacher_hash: str | None


class RunDir:
    """The files of one training run folder, with typed reads and writes."""

    METRICS = "metrics.jsonl"
    LAST = "last.pt"
    BEST = "best.pt"
    SUMMARY = "summary.json"
    TEACHER = "teacher.pt"
    # What a search trial's checkpoint carries so that the run resumes where it stopped.
    CHECKPOINT_FILES: tuple[str, ...] = (LAST, BEST, METRICS)

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    # ------------------------------------------------------------------------ paths
    @property
    def metrics(self) -> Path:
        return self.path / self.METRICS

    @property
    def last(self) -> Path:
        return self.path / self.LAST

    @property
    def best(self) -> Path:
        return self.path / self.BEST

    @property
    def summary(self) -> Path:
        return self.path / self.SUMMARY

    @property
    def teacher(self) -> Path:
        return self.path / self.TEACHER

    def create(self) -> RunDir:
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    def remove_if_unstarted(self) -> bool:
        """Delete the folder when no epoch was recorded in it: it is empty or holds only an
        empty metrics file. Returns whether it was removed (anything else keeps it)."""
        try:
            entries = list(self.path.iterdir())
        except OSError:
            return False
        for entry in entries:
            if entry.name != self.METRICS or not entry.is_file() or entry.stat().st_size:
                return False
        for entry in entries:
            entry.unlink()
        self.path.rmdir()
        return True

    # -------------------------------------------------------------------- questions
    def has_checkpoint(self) -> bool:
        """Whether a run has checkpointed an epoch here (it can be resumed)."""
        return self.last.is_file()

    def is_finished(self) -> bool:
        return self.summary.is_file()

    def eval_weights(self) -> Path:
        """The weights to evaluate: best-on-val, else the last ones (a run without val)."""
        if not self.best.is_file() and self.last.is_file():
            return self.last
        return self.best

    # ---------------------------------------------------------------------- summary
    def write_summary(self, summary: RunSummary) -> None:
        self.summary.write_text(json.dumps(summary, indent=1) + "\n")

    def read_summary(self) -> RunSummary | None:
        """The summary of a finished run; None when there is none or it is unreadable."""
        try:
            data = json.loads(self.summary.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    # ---------------------------------------------------------------------- metrics
    def write_metrics(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Replace the metrics file with ``rows`` (on resume: exactly the checkpointed epochs)."""
        self.metrics.write_text("".join(json.dumps(dict(row)) + "\n" for row in rows))

    def append_metrics(self, row: Mapping[str, Any]) -> None:
        with self.metrics.open("a") as f:
            f.write(json.dumps(dict(row)) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        """One dict per finished epoch; [] when there is no file (a partial last line, from
        a crash while writing it, is skipped)."""
        try:
            lines = self.metrics.read_text().splitlines()
        except OSError:
            return []
        rows = []
        for line in lines:
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
        return rows

    def epochs_done(self) -> int:
        """The number of epochs the metrics file records (0 without one)."""
        try:
            with self.metrics.open() as f:
                return sum(1 for line in f if line.strip())
        except OSError:
            return 0
