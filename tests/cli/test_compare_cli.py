"""`pcd compare`'s bad input: one line naming the flag, exit code 2, before any run."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from service.cli import app

runner = CliRunner()
GOOD = ["compare", "--student", "mlp_32", "--teacher-arch", "cnn_small"]


def _error(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize(
    "args,message",
    [
        ([*GOOD, "--methods", "ce,foo"], "--methods: unknown method 'foo'"),
        ([*GOOD, "--methods", "kd"], "--methods: give at least two different methods"),
        ([*GOOD, "--methods", "ce,kd", "--reference", "pcd"], "--reference: 'pcd' is not one"),
        (["compare", "--student", "mlp_32"], "--teacher / --teacher-arch: give exactly one"),
        (["compare", "--teacher-arch", "cnn_small"], "--student: required"),
        ([*GOOD[:2], "nope", *GOOD[3:]], "--student: "),
        ([*GOOD, "--data", "image_folder", "--data-root", "/no/such"], "--data-root: /no/such"),
        ([*GOOD, "--seeds", "0"], "--seeds"),
        ([*GOOD, "--preset", "nope"], "--preset: unknown preset 'nope'; one of pcd-ablation"),
        ([*GOOD, "--preset", "pcd-ablation", "--methods", "ce,kd"], "--methods / --preset"),
        ([*GOOD, "--preset", "pcd-ablation", "--reference", "dkd"], "--reference: 'dkd' is not"),
    ],
)
def test_bad_flags_are_one_line_naming_the_flag(args: list[str], message: str) -> None:
    assert message in _error(args)


def test_a_spec_without_a_comparison_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "search.yaml"
    path.write_text("name: s\nteacher: {arch: cnn_small}\nstudent: mlp_32\n")
    assert "has no comparison section" in _error(["compare", "--spec", str(path)])
