"""bench/report.py end to end in --quick mode, on Fashion-MNIST-format IDX files written here."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from service.study_files import StudyFolder

ROOT = Path(__file__).resolve().parents[2]


def _write_idx(path: Path, array: np.ndarray) -> None:
    with path.open("wb") as f:
        f.write(struct.pack(">I", 0x800 | array.ndim))
        f.write(struct.pack(">" + "I" * array.ndim, *array.shape))
        f.write(np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def _fake_fashion(folder: Path, n_train: int = 900, n_test: int = 600) -> None:
    """Learnable 28x28 images: a bright bar whose position is the class, plus noise."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.permutation(np.arange(n) % 10).astype(np.uint8)
        images = rng.integers(0, 90, (n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(labels):
            images[i, 2 * c + 3 : 2 * c + 6, 4:24] = 230
        _write_idx(folder / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels)


@pytest.mark.heavy  # the report rehearsed end to end (make test-heavy)
def test_quick_report_end_to_end(tmp_path: Path) -> None:
    source, out, docs = tmp_path / "fmnist", tmp_path / "runs", tmp_path / "docs"
    _fake_fashion(source)
    args = ["--quick", "--workers", "2", "--source", str(source)]
    args += ["--out", str(out), "--docs", str(docs)]
    first = _run_report(args)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]

    md = (docs / "results.md").read_text()
    data = json.loads((docs / "results" / "report.json").read_text())
    assert data["data"]["train_subset"] == 600 and data["data"]["test"] == 500
    for section in ("## Headline", "## 1. Methods", "## 2. PCD taken apart", "## Setup"):
        assert section in md
    assert "Selection protocol" in md and "Other benchmarks" in md
    for name in ("methods", "ablation"):
        assert (docs / "results" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
        study = data["studies"][name]
        # the report is a thin user of the comparison: its numbers are the study's summary
        summary = StudyFolder(Path(study["study_dir"])).read_summary()
        assert summary is not None and summary.comparison is not None
        assert study["comparison"] == summary.comparison.model_dump(mode="json")
        _check_fair_and_selected_on_val(summary)
        for entry in summary.comparison.entries:  # every entry has its table row
            assert any(line.startswith(f"| {entry.name} | ") for line in md.splitlines())
    methods = data["studies"]["methods"]["comparison"]
    names = ["ce", "kd", "dkd", "pcd", "pcd released"]
    assert [e["name"] for e in methods["entries"]] == names
    ablation = data["studies"]["ablation"]["comparison"]
    by_name = {e["name"]: e for e in ablation["entries"]}
    assert by_name["pcd S=5"]["options"] == {**by_name["pcd"]["options"], "stages": 5}
    assert by_name["kd ce_weight=1"]["options"]["ce_weight"] == 1.0
    # the ablation section reads every ablation entry against PCD
    for name in by_name:
        if name != "pcd":
            assert f"— {name} − pcd: " in md
    # one teacher: the ablation loads the one the methods study trained
    ablation_dir = Path(data["studies"]["ablation"]["study_dir"])
    assert not StudyFolder(ablation_dir).teacher_dir.exists()

    # a rerun trains nothing: both studies are read back
    second = _run_report(args)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    again = json.loads((docs / "results" / "report.json").read_text())
    assert [s["trained"] for s in again["studies"].values()] == [0, 0]
    assert again["studies"] == {k: {**v, "trained": 0} for k, v in data["studies"].items()}
    ledger = json.loads((out / "invocations.json").read_text())
    assert [x["trained"] > 0 for x in ledger] == [True, False]
    assert "(1 invocation(s)," in (docs / "results.md").read_text()


def _run_report(args: list[str]) -> subprocess.CompletedProcess:
    """The report as users run it, in its own process: its local Ray ends with it (an
    in-process Ray outlived the test and held the dashboard agent's port the next heavy
    test's cluster needed)."""
    cmd = [sys.executable, str(ROOT / "bench" / "report.py"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=1200, cwd=ROOT)


def _check_fair_and_selected_on_val(summary) -> None:
    """Every searched entry ran the same number of trials of the same epochs, and its
    options are those of its trial with the highest val accuracy."""
    searched = [e for e in summary.comparison.entries if e.trials]
    assert searched and {e.trials for e in searched} == {2}
    for entry in searched:
        rows = [t for t in summary.trials if t.entry == entry.name]
        assert len(rows) == 2 and {t.epochs for t in rows} == {1}
        best = max(rows, key=lambda t: t.best)
        assert {k: best.config[k] for k in entry.options} == entry.options
