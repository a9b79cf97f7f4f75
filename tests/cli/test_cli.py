"""The `pcd` command line: one command tree, models, teacher train, distill, eval, and
one-line errors from every layer's commands.

End to end on the digits data set with tiny models and 2 epochs (a few seconds in all).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner, Result

import pcd_core
from pcd_core import cli
from pcd_core.models import build_model, count_parameters
from pcd_core.train import load_teacher
from service.cli import app  # the `pcd` entry point: the whole command tree

runner = CliRunner()


def invoke(*args: object) -> Result:
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result: Result, code: int | None = None) -> str:
    """Exit code != 0, exactly one stderr line ``error: ...``, no traceback."""
    assert result.exit_code != 0, result.output
    if code is not None:
        assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("cli")
    with pytest.MonkeyPatch.context() as mp:  # runs are tracked: in a store of this module's
        mp.setenv("PCD_MLFLOW_LOCAL_DIR", str(path / "mlflow"))
        mp.delenv("PCD_MLFLOW_TRACKING_URI", raising=False)
        yield path


@pytest.fixture(scope="module")
def teacher_run(workdir: Path) -> tuple[Path, Result]:
    """`pcd teacher train` with the default out folder (relative to the working folder)."""
    with contextlib.chdir(workdir):
        result = invoke("teacher", "train", "--arch", "mlp_64", "--epochs", 2, "--quiet")
    return workdir / "runs" / "teacher-mlp_64-digits-s0", result


@pytest.fixture(scope="module")
def teacher(teacher_run: tuple[Path, Result]) -> Path:
    run_dir, result = teacher_run
    assert result.exit_code == 0, result.output
    return run_dir / "teacher.pt"


# ------------------------------------------------------------------------------ top level
def test_version_and_help() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"pcd {pcd_core.__version__}"
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("models", "data", "teacher", "distill", "eval"):
        assert command in result.stdout


def test_models_list_shows_parameter_counts() -> None:
    result = invoke("models", "list", "--classes", 100)
    assert result.exit_code == 0, result.output
    n = count_parameters(build_model("resnet8x4", 100, 3, 32))
    row = next(line for line in result.stdout.splitlines() if " resnet8x4 " in line)
    assert f"{n / 1e6:.3f}" in row  # 1.234 M at 100 classes
    assert "MobileNetV2" in result.stdout and "cnn_tiny" in result.stdout


# --------------------------------------------------------------------------- end to end
def test_teacher_train_writes_a_hashed_artifact(teacher_run: tuple[Path, Result]) -> None:
    run_dir, result = teacher_run
    assert result.exit_code == 0, result.output
    artifact = run_dir / "teacher.pt"
    assert artifact.is_file() and (run_dir / "summary.json").is_file()
    _, info = load_teacher(artifact)
    assert f"teacher artifact: {Path('runs') / run_dir.name / 'teacher.pt'}" in result.stdout
    assert f"content hash: {info.content_hash[:12]} (sha256 {info.content_hash})" in result.stdout
    assert f"test top-1 {info.test_top1:.2f}% (best-on-val weights" in result.stdout
    assert "val top-1" in result.stdout and "(last epoch 2)" in result.stdout


@pytest.mark.parametrize(
    ("method", "sets", "options"),
    [
        ("kd", [], {}),
        ("pcd", ["stages=3", "temperature=2"], {"stages": 3, "temperature": 2.0}),
    ],
)
def test_distill(
    teacher: Path, workdir: Path, method: str, sets: list[str], options: dict[str, object]
) -> None:
    out = workdir / f"student-{method}"
    set_args = [a for s in sets for a in ("--set", s)]
    quiet = ["--quiet"] if method == "pcd" else []  # kd shows the progress bar
    result = invoke(
        "distill", "--teacher", teacher, "--student", "mlp_32", "--method", method,
        *set_args, "--epochs", 2, "--out", out, *quiet,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    # the result, then where to see the run in MLflow (tests/cli/test_run_tracking.py)
    summary = next(line for line in lines if line.startswith(f"{method} mlp_32: "))
    assert lines[-1].startswith("MLflow run: ")
    assert summary.startswith(f"{method} mlp_32: best-on-val epoch ")
    assert "(best-on-val weights)" in summary and "(last epoch 2)" in summary
    assert "hard-class test top-1" in summary and str(out) in summary
    run = json.loads((out / "summary.json").read_text())
    assert run["config"]["method_options"] == options  # coerced by the method's schema
    assert f"test top-1 {run['test']['best_val']['top1']:.2f}% (best-on-val weights)" in summary
    assert f"{run['test']['last']['top1']:.2f}% (last epoch 2)" in summary
    if not quiet:
        assert "epoch 2" in result.stderr and "val top-1" in result.stderr


def test_distill_refuses_to_overwrite_a_run_and_resumes(teacher: Path, workdir: Path) -> None:
    out = workdir / "student-resume"
    args = ["distill", "--teacher", teacher, "--student", "mlp_32", "--method", "kd"]
    args += ["--epochs", 1, "--out", out, "--quiet"]
    assert invoke(*args).exit_code == 0
    line = assert_one_line_error(invoke(*args), code=1)
    assert "--resume" in line
    result = invoke(*args, "--resume")  # a finished run: re-evaluated, not retrained
    assert result.exit_code == 0, result.output
    assert "(last epoch 1)" in result.stdout


def test_eval_teacher_artifact_and_student_run(teacher: Path, workdir: Path) -> None:
    _, info = load_teacher(teacher)
    threads = torch.get_num_threads()
    try:
        result = invoke("eval", teacher, "--threads", 1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    assert f"top-1 {info.test_top1:.2f}%" in result.stdout and "top-5" in result.stdout

    run_dir = workdir / "student-kd"  # written by test_distill
    if not (run_dir / "summary.json").is_file():
        pytest.skip("needs test_distill[kd]")
    summary = json.loads((run_dir / "summary.json").read_text())
    result = invoke("eval", run_dir, "--per-class")
    assert result.exit_code == 0, result.output
    assert f"top-1 {summary['test']['best_val']['top1']:.2f}%" in result.stdout
    assert "per-class" in result.stdout
    result = invoke("eval", run_dir / "last.pt", "--split", "val")
    assert result.exit_code == 0, result.output
    last_val = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])["val_top1"]
    assert f"digits val (144 images): top-1 {last_val:.2f}%" in result.stdout


# ------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("args", "code", "expected"),
    [
        (["--method", "foo"], 2, ["unknown method 'foo'", "pcd"]),
        (["--set", "foo=1"], 2, ["unknown option 'foo'", "allowed options:", "stages"]),
        (["--set", "stages"], 2, ["key=value", "'stages'"]),
        (["--set", "stages=2", "--set", "stages=3"], 2, ["given twice"]),
        (["--set", "stages=11"], 2, ["stages", "11", "10"]),
        (["--set", "stages=abc"], 2, ["stages", "integer"]),
        (["--student", "resnet9"], 2, ["arch: unknown model 'resnet9'", "pcd models list"]),
        (["--epochs", "0"], 2, ["epochs:", "greater than or equal to 1"]),
        (["--dataset", "nope"], 2, ["data.name: unknown dataset 'nope'"]),
        (["--method", "ce"], 2, ["without a teacher"]),
        (["--teacher-hash", "0123456789ab"], 1, ["hash", "0123456789ab"]),
        (["--epochs", "two"], 2, ["--epochs"]),
    ],
)
def test_distill_errors_are_one_line(
    teacher: Path, workdir: Path, args: list[str], code: int, expected: list[str]
) -> None:
    base = {"--teacher": str(teacher), "--student": "mlp_32", "--epochs": "1"}
    for flag in args[::2]:  # args are (flag, value) pairs; theirs replace the defaults
        base.pop(flag, None)
    flat = [a for kv in base.items() for a in kv]
    result = invoke("distill", *flat, *args, "--out", workdir / "never", "--quiet")
    line = assert_one_line_error(result, code)
    for text in expected:
        assert text in line, line
    assert not (workdir / "never" / "last.pt").exists()


def test_missing_and_corrupt_teacher(workdir: Path) -> None:
    corrupt = workdir / "corrupt.pt"
    corrupt.write_bytes(b"\x00garbage, not a torch file\xff" * 10)
    for path, text in ((workdir / "missing.pt", "does not exist"), (corrupt, "not a readable")):
        args = ["--teacher", path, "--student", "mlp_32", "--epochs", 1, "--quiet"]
        line = assert_one_line_error(invoke("distill", *args), code=1)
        assert str(path) in line and text in line
        line = assert_one_line_error(invoke("eval", path), code=1)
        assert str(path) in line and text in line


def test_usage_errors_are_one_line(teacher: Path) -> None:
    line = assert_one_line_error(invoke("distill", "--student", "mlp_32"), code=2)
    assert "--teacher" in line
    assert_one_line_error(invoke("no-such-command"), code=2)
    assert_one_line_error(invoke("teacher", "train", "--arch", "resnet9"), code=2)
    assert_one_line_error(invoke("eval", teacher, "--split", "train"), code=2)


def test_ctrl_c_exits_130(teacher: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "train", interrupted)
    args = ["--teacher", teacher, "--student", "mlp_32", "--out", workdir / "ctrl-c", "--quiet"]
    line = assert_one_line_error(invoke("distill", *args), code=130)
    assert "interrupted" in line


def test_one_command_tree_holds_every_layers_commands() -> None:
    import typer

    root = typer.main.get_command(app)
    assert set(root.commands) == {  # type: ignore[attr-defined]
        "models", "methods", "data", "teacher", "distill", "eval",  # pcd_core
        "serve", "study", "reproduce", "compare",  # the service
    }  # fmt: skip


def test_service_commands_share_the_error_convention() -> None:
    """The service's commands fail like pcd_core's: one `error:` line, code 2 for bad usage."""
    assert "no-such-space" in assert_one_line_error(invoke("study", "run", "no-such-space"), 2)
    assert "--set" in assert_one_line_error(invoke("study", "submit", "x", "--set", "novalue"), 2)
    assert_one_line_error(invoke("reproduce", "cifar100", "--pairs", "no-such-pair"), 2)
    assert_one_line_error(invoke("reproduce", "cifar100", "--seeds", "0"), 2)
