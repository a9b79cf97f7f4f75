"""RunDir: the one owner of a run folder's files, its reads tolerant of a crash mid-write."""

from __future__ import annotations

from pathlib import Path

from pcd_core.run_dir import RunDir


def test_metrics_round_trip_and_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run").create()
    assert run.read_metrics() == [] and run.epochs_done() == 0
    run.write_metrics([{"epoch": 1}, {"epoch": 2}])
    run.append_metrics({"epoch": 3})
    assert [r["epoch"] for r in run.read_metrics()] == [1, 2, 3]
    with run.metrics.open("a") as f:
        f.write('{"epoch": 4, "lo')  # a crash while writing the line
    assert [r["epoch"] for r in run.read_metrics()] == [1, 2, 3]
    run.write_metrics([{"epoch": 1}])  # a resume rewrites exactly the checkpointed epochs
    assert run.epochs_done() == 1


def test_summary_reads_none_when_missing_or_unreadable(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    assert run.read_summary() is None and not run.is_finished()
    run.summary.write_text("{not json")
    assert run.read_summary() is None
    summary = {
        "config": {"arch": "mlp_32"},
        "best_epoch": 2,
        "best_val_top1": 50.0,
        "test": {"last": {"epoch": 2, "top1": 40.0}},
        "teacher": None,
        "teacher_artifact": None,
        "teacher_hash": None,
    }
    run.write_summary(summary)  # type: ignore[arg-type]
    assert run.read_summary() == summary and run.is_finished()


def test_eval_weights_are_best_on_val_else_last(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    assert run.eval_weights() == run.best  # nothing yet: the caller reports best.pt missing
    run.last.write_bytes(b"")
    assert run.eval_weights() == run.last and run.has_checkpoint()
    run.best.write_bytes(b"")
    assert run.eval_weights() == run.best
    assert set(RunDir.CHECKPOINT_FILES) == {run.last.name, run.best.name, run.metrics.name}


def test_only_a_folder_without_a_recorded_epoch_is_removed(tmp_path: Path) -> None:
    empty = RunDir(tmp_path / "empty").create()
    assert empty.remove_if_unstarted() and not empty.path.exists()
    started = RunDir(tmp_path / "started").create()
    started.write_metrics([])  # what a run writes before its first epoch
    assert started.remove_if_unstarted() and not started.path.exists()
    assert not RunDir(tmp_path / "never").remove_if_unstarted()
    for name, text in (("metrics.jsonl", '{"epoch": 1}\n'), ("notes.txt", "mine")):
        kept = RunDir(tmp_path / name).create()
        (kept.path / name).write_text(text)
        assert not kept.remove_if_unstarted() and (kept.path / name).read_text() == text
