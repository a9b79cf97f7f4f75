"""`pcd reproduce cifar100`: the reproduction data (every pair validates and builds) and the
command end to end on a tiny generated CIFAR-100 archive (2 epochs, a local Ray)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pcd_core.models import build_model
from pcd_core.testing.datasets import write_cifar
from search_spaces.reproduce import load_benchmark, study_spec
from service.study_files import StudyFolder

PCD = Path(sys.executable).parent / "pcd"

PAIRS = [
    "resnet32x4-resnet8x4",
    "vgg13-vgg8",
    "wrn_40_2-wrn_40_1",
    "wrn_40_2-wrn_16_2",
    "resnet56-resnet20",
    "resnet110-resnet32",
    "resnet110-resnet20",
    "resnet32x4-ShuffleV2",
    "resnet32x4-wrn_16_2",
    "resnet32x4-wrn_40_2",
    "wrn_40_2-resnet8x4",
    "wrn_40_2-MobileNetV2",
    "vgg13-MobileNetV2",
    "ResNet50-MobileNetV2",
]


def test_every_pair_validates_and_builds() -> None:
    bench = load_benchmark("cifar100")
    assert bench.pair_ids == PAIRS and bench.epochs == 240
    for pair in bench.pairs:
        for method in ("ce", "kd", "dkd", "pcd"):
            spec = study_spec(
                bench,
                pair,
                method,
                epochs=240,
                seeds=3,
                teacher_checkpoint=f"cifar100/{pair.teacher}.pt",
                teacher_hash=None,
            )
            assert spec.is_fixed and spec.promotion.seeds == 3
            assert spec.promotion.test_each_epoch and spec.budget.max_epochs == 240
        stages = bench.method_options(pair, "pcd")["stages"]
        assert stages == (3 if pair.family == "same" else 5), pair.id
        for name in (pair.teacher, pair.student):
            assert build_model(name, 100).__class__.__name__
    # the published numbers and per-pair settings that the table puts beside ours
    anchor = bench.pair("resnet32x4-resnet8x4")
    assert {k: v.value for k, v in anchor.published.items()} == {
        "teacher": 79.42,
        "ce": 72.50,
        "kd": 73.33,
        "dkd": 76.32,
        "pcd": 76.34,
    }
    assert bench.pair("vgg13-vgg8").published["dkd"].source == "mdistiller"
    assert bench.pair("resnet110-resnet20").published == {}
    betas = {p.id: bench.method_options(p, "dkd")["beta"] for p in bench.pairs}
    assert betas["resnet56-resnet20"] == 2 and betas["wrn_40_2-wrn_16_2"] == 6
    assert betas["resnet32x4-resnet8x4"] == 8
    kd = bench.method_options(anchor, "kd")
    assert kd == {"temperature": 4, "ce_weight": 0.1, "kd_weight": 0.9}


def test_test_each_epoch_reports_the_best_epoch_on_test_apart(tmp_path) -> None:
    from pcd_core.train import TrainConfig, train

    config = TrainConfig(arch="mlp_32", epochs=3, lr=0.01, test_each_epoch=True)
    result = train(config, tmp_path / "run")
    tops = [h.test_top1 for h in result.history]
    best = result.test["best_test_epoch"]
    assert None not in tops and best["top1"] == max(tops)
    assert result.history[best["epoch"] - 1].test_top1 == best["top1"]
    assert set(result.test) == {"best_val", "last", "best_test_epoch"}
    assert not any("test" in k for k in result.history[0].scalars())  # never reported to a search
    plain = train(config.model_copy(update={"test_each_epoch": False}), tmp_path / "plain")
    assert "best_test_epoch" not in plain.test and plain.history[0].test_top1 is None


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "PCD_"))}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    return env


def _pcd(args: list[str], cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(PCD), *args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--pairs", "resnet56-resnet2"], "unknown pair 'resnet56-resnet2'; valid pairs: "),
        (["--methods", "kd,crd"], "unknown method 'crd'; valid methods: ce, kd, dkd, pcd"),
        (["--seeds", "0"], "--seeds must be at least 1"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, expected) -> None:
    proc = _pcd(["reproduce", "cifar100", *args], tmp_path, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0]
    if "pair" in expected:
        assert all(p in lines[0] for p in PAIRS)
    assert not (tmp_path / "runs").exists()


@pytest.mark.heavy
def test_reproduce_end_to_end_teacher_once_and_resumable(tmp_path) -> None:
    write_cifar(tmp_path / "data", n_train=128, n_test=100)
    common = ["reproduce", "cifar100", "--pairs", "resnet56-resnet20", "--seeds", "2"]
    common += ["--epochs", "2", "--num-cpus", "2"]
    out = tmp_path / "runs" / "reproduce"
    teacher = tmp_path / "teachers" / "cifar100" / "resnet56-e2.pt"

    first = _pcd([*common, "--methods", "kd"], tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "teachers: 0 reused, 1 to train" in " ".join(first.stdout.split())
    assert teacher.is_file()
    teacher_mtime = teacher.stat().st_mtime_ns
    kd_summary = StudyFolder(out / "studies" / "resnet56-resnet20__kd").summary_file
    kd_mtime = kd_summary.stat().st_mtime_ns

    second = _pcd([*common, "--methods", "kd,dkd,pcd"], tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    text = " ".join(second.stdout.split())
    assert "1 finished before; teachers: 1 reused, 0 to train" in text
    assert teacher.stat().st_mtime_ns == teacher_mtime  # not trained again
    assert kd_summary.stat().st_mtime_ns == kd_mtime  # the finished study was skipped

    table = json.loads((out / "table.json").read_text())
    rows = {r["method"]: r for r in table["rows"]}
    assert [r["method"] for r in table["rows"]] == ["teacher", "kd", "dkd", "pcd"]
    assert {r["pair"] for r in table["rows"]} == {"resnet56-resnet20"}
    assert rows["teacher"]["status"] == "reused"
    assert rows["kd"]["status"] == "skipped"
    assert rows["dkd"]["status"] == rows["pcd"]["status"] == "done"
    assert rows["kd"]["published"] == {"value": 70.66, "source": "mdistiller", "note": ""}
    assert rows["dkd"]["published"]["value"] == 71.97
    assert rows["pcd"]["published"] is None and rows["teacher"]["published"] is None
    assert rows["dkd"]["config"]["beta"] == 2 and rows["pcd"]["config"]["stages"] == 3
    for method in ("kd", "dkd", "pcd"):
        ours = rows[method]["ours"]
        last, best = ours["last_epoch"], ours["best_epoch"]
        assert last["n"] == best["n"] == 2 and len(last["values"]) == 2
        assert all(b >= v for b, v in zip(best["values"], last["values"], strict=True))
        assert all(1 <= e <= 2 for e in best["epochs"])
    assert table["epochs"] == 2 and table["seeds"] == 2
    assert any("no validation split" in f for f in table["footnotes"])

    md = (out / "table.md").read_text()
    assert "| resnet56-resnet20 | kd |" in md and "| 70.66 | mdistiller |" in md
    assert "| 71.97 | mdistiller |" in md and "ours, best epoch" in md and "ours, last epoch" in md
    assert "the standard recipe is 240: not comparable" in md

    third = _pcd([*common, "--methods", "kd,dkd,pcd"], tmp_path)  # all finished: nothing runs
    assert third.returncode == 0, third.stderr[-3000:]
    assert "3 finished before; teachers: 1 reused, 0 to train" in " ".join(third.stdout.split())
    assert "Ray" not in third.stderr


@pytest.mark.heavy
def test_reproduce_on_a_cluster(tmp_path, ray_cluster) -> None:
    """The same command on an existing two-node cluster (PCD_RAY_ADDRESS): teacher and seeds
    run as Ray tasks there, not on a local Ray."""
    write_cifar(tmp_path / "data", n_train=128, n_test=100)
    env = {**ray_cluster["env"], "PCD_RAY_ADDRESS": ray_cluster["address"]}
    env = {k: v for k, v in env.items() if k != "PCD_MLFLOW_TRACKING_URI"}
    args = ["reproduce", "cifar100", "--pairs", "resnet56-resnet20", "--methods", "kd"]
    args += ["--seeds", "2", "--epochs", "1"]
    proc = subprocess.run(
        [str(PCD), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert ray_cluster["address"] in " ".join(proc.stdout.split())
    table = json.loads((tmp_path / "runs" / "reproduce" / "table.json").read_text())
    kd = next(r for r in table["rows"] if r["method"] == "kd")
    assert kd["status"] == "done" and kd["ours"]["last_epoch"]["n"] == 2


def test_teachers_live_under_the_service_teacher_root() -> None:
    """PCD_TEACHER_ROOT means one folder for the API, the drivers and `pcd reproduce` alike:
    reproduce kept its teachers in ROOT/teachers/cifar100/ with a root of `.` by default."""
    import click
    import typer

    from service.cli import app
    from service.reproduce import teacher_relpath
    from service.settings import DEFAULT_TEACHER_ROOT

    bench = load_benchmark("cifar100")
    assert teacher_relpath(bench, "resnet56", bench.epochs) == "cifar100/resnet56.pt"
    assert teacher_relpath(bench, "resnet56", 2) == "cifar100/resnet56-e2.pt"
    root = typer.main.get_command(app)
    ctx = click.Context(root)
    command = root.get_command(ctx, "reproduce").get_command(ctx, "cifar100")
    (option,) = [p for p in command.params if p.name == "teacher_root"]
    assert Path(option.default) == DEFAULT_TEACHER_ROOT and option.envvar == "PCD_TEACHER_ROOT"
