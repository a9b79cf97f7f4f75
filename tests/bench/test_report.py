"""bench/report.py end to end in --quick mode, on Fashion-MNIST-format IDX files written here."""

from __future__ import annotations

import importlib.util
import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]


def _load_report():
    spec = importlib.util.spec_from_file_location("pcd_report", ROOT / "bench" / "report.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules["pcd_report"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


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
    report = _load_report()
    source, out, docs = tmp_path / "fmnist", tmp_path / "runs", tmp_path / "docs"
    _fake_fashion(source)
    args = ["--quick", "--workers", "1", "--source", str(source)]
    args += ["--out", str(out), "--docs", str(docs)]
    runner = CliRunner()
    first = runner.invoke(report.app, args)
    assert first.exit_code == 0, first.output

    md = (docs / "results.md").read_text()
    data = json.loads((docs / "results" / "report.json").read_text())
    assert data["data"]["train_subset"] == 600 and data["data"]["test"] == 500
    # every comparison has its table (with n = 2 seeds on every row) and its plot
    for i, cmp in enumerate(data["comparisons"], 1):
        assert f"### {i}. {cmp['title']}" in md
        for label, _name in cmp["rows"]:
            section = md.split(f"### {i}. {cmp['title']}", 1)[1].splitlines()
            row = next(line for line in section if line.startswith(f"| {label} | "))
            assert row.split("|")[2].strip() == "2", row
        png = docs / "results" / f"{i}-{cmp['title'].lower().replace(' ', '-')}.png"
        assert png.read_bytes()[:4] == b"\x89PNG"
    assert len(data["comparisons"]) == 6
    # every weighting the registry offers, S = 1..5, released, with/without ranking and std
    names = set(data["results"])
    assert {"ce", "kd", "dkd", "pcd joint", "pcd phased", "pcd released"} <= names
    assert {"pcd weighting=none", "pcd weighting=released", "pcd ranking=none"} <= names
    assert {f"pcd S={k}" for k in (1, 2, 4, 5)} <= names and "pcd standardised" in names
    assert data["configs"]["pcd S=1"]["options"]["stages"] == 1
    for r in data["results"].values():
        assert r["seeds"] == [0, 1] and len(r["test_top1_best_val"]) == 2
        assert len(r["test_hard_top1"]) == 2  # ce too (from its per-class test accuracy)
    assert "## Headline" in md and "Selection protocol" in md and "Other benchmarks" in md

    # tuning selects by val: the chosen point is the argmax of the val accuracies stored in
    # the runs themselves, and the reported config of the family is that point
    for family, fam in data["tuning"].items():
        vals = []
        for p in fam["points"]:
            method = report.GRIDS[family][0]
            label = report.run_label(method, p["options"])
            stored = json.loads((out / "runs" / f"{label}-s100" / "summary.json").read_text())
            assert stored["best_val_top1"] == p["mean_val_top1"]
            vals.append(stored["best_val_top1"])
        assert fam["chosen"] == fam["points"][int(np.argmax(vals))]["options"]
        assert data["configs"][family]["options"] == fam["chosen"]

    # a rerun trains nothing: every run is read back from its summary.json
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/summary.json")}
    assert len(stamps) == data["wall"]["tuning_trained"] + data["wall"]["final_trained"]
    second = runner.invoke(report.app, args)
    assert second.exit_code == 0, second.output
    again = json.loads((docs / "results" / "report.json").read_text())
    assert again["wall"]["tuning_trained"] == 0 and again["wall"]["final_trained"] == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/summary.json")} == stamps
    assert again["results"] == data["results"]
    ledger = json.loads((out / "invocations.json").read_text())
    assert [x["trained"] > 0 for x in ledger] == [True, False]
    assert "(1 invocation(s)," in (docs / "results.md").read_text()


def test_select_takes_the_val_argmax() -> None:
    report = _load_report()
    runs = [
        {"job": {"name": "kd", "options": {"temperature": t}}, "val_top1": v}
        for t, v in ((2.0, 80.0), (4.0, 85.5), (8.0, 85.5), (4.0, 84.5))
    ]
    fam = report.select(runs)["kd"]
    assert fam["chosen"] == {"temperature": 8.0}  # mean(85.5, 84.5) = 85.0 < 85.5
    assert [p["mean_val_top1"] for p in fam["points"]] == [80.0, 85.0, 85.5]
