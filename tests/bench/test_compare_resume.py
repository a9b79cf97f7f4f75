"""compare_methods(reuse_finished=True) reads a finished run back instead of training it."""

from __future__ import annotations

from pathlib import Path

from pcd_core.compare import compare_methods, run_label
from pcd_core.train import DataConfig


def test_reuse_finished_skips_only_the_same_configuration(tmp_path: Path) -> None:
    kw = dict(
        teacher=tmp_path / "unused.pt",
        student="mlp_32",
        methods=[("ce", {})],
        seeds=[0],
        data=DataConfig(name="digits"),
        lr=0.01,
        reuse_finished=True,
    )
    (first,) = compare_methods(tmp_path, epochs=1, **kw)
    summary = tmp_path / f"{run_label('ce', {})}-s0" / "summary.json"
    stamp = summary.stat().st_mtime_ns
    (again,) = compare_methods(tmp_path, epochs=1, **kw)
    assert summary.stat().st_mtime_ns == stamp  # not trained again
    assert again.val_top1 == first.val_top1 and again.seeds == [0]
    assert again.test_top1_best_val == first.test_top1_best_val
    assert again.best_epochs == first.best_epochs
    compare_methods(tmp_path, epochs=2, **kw)  # another configuration: trained
    assert summary.stat().st_mtime_ns != stamp
