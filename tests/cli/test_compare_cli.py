"""`pcd compare`'s bad input: one line naming the flag, exit code 2, before any run."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from search_spaces.schema import preset_questions
from service.cli import app
from service.compare_cli import _report
from service.comparison import ablation_reading
from service.settings import RunnerSettings
from service.study_files import (
    ComparisonResult,
    EntryResult,
    MeanStdResult,
    PairedResult,
    StudySummary,
)

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


def _entry(name: str, mean: float, ci: float | None) -> EntryResult:
    stats = MeanStdResult(mean=80.0, std=1.0)
    paired = PairedResult(mean=mean, std=1.0, ci95=ci, wins=0, n=3, verdict="v")
    return EntryResult(
        name=name, method="pcd", tuning="tuned_from pcd", options={}, trials=0, max_epochs=1,
        best_val=None, seeds=[0, 1, 2], best_epochs=[1, 1, 1],
        test_top1_best_val=[80.0] * 3, test_top1_last=[80.0] * 3, hard_top1=[],
        test_top1_best_val_stats=stats, test_top1_last_stats=stats, hard_top1_stats=None,
        vs_reference=None if name == "pcd" else paired,
    )  # fmt: skip


@pytest.mark.parametrize(
    "mean,ci,reading",
    [
        (-2.0, 1.0, "pcd's choice helps: x is worse"),
        (2.0, 1.0, "pcd's choice hurts here: x is better"),
        (-0.5, 1.0, "no clear difference"),
        (-2.0, None, "no clear difference"),  # one seed: no interval, no verdict
    ],
)
def test_an_ablation_reads_as_its_interval_says(mean: float, ci: float | None, reading: str):
    assert ablation_reading(_entry("x", mean, ci), "pcd").startswith(reading)


def test_a_preset_comparison_prints_what_each_part_does(capsys, tmp_path: Path) -> None:
    entries = [_entry("pcd", 0.0, None), _entry("pcd S=1", -2.0, 1.0), _entry("ce", -5.0, 1.0)]
    summary = StudySummary(
        name="a", study_dir=tmp_path, parent_run_id="r", tracking_uri="sqlite:///x.db",
        best_config={}, best_value=None, best_trial_id=None, trials=[],
        comparison=ComparisonResult(reference="pcd", seeds=3, entries=entries),
    )  # fmt: skip
    _report(summary, RunnerSettings(), False, preset_questions("pcd-ablation"))
    out = capsys.readouterr().out
    assert "What each part of pcd does on this data:" in out
    assert "pcd S=1 — class-level groups at all" in out and "pcd's choice helps: pcd S=1" in out
    assert "ce — distillation at all (the student alone): pcd's choice helps: ce is worse" in out
