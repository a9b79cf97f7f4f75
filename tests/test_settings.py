"""One owner of the PCD_* settings: Settings (the API), RunnerSettings (a driver), the CLI's
defaults and README's table all agree."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer.main

from service.settings import RunnerSettings, Settings

README = Path(__file__).resolve().parents[1] / "README.md"


def _shown_default(name: str) -> str:
    field = Settings.model_fields[name]
    extra = field.json_schema_extra or {}
    if "unset" in extra:
        return str(extra["unset"])
    value = field.default
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, int | float):
        return f"{value:g}"
    return f"`{value}`"


def settings_table() -> str:
    """README's settings table, as the Settings fields say it."""
    rows = ["| setting | meaning | default |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        rows.append(f"| `PCD_{name.upper()}` | {field.description} | {_shown_default(name)} |")
    return "\n".join(rows)


def test_readme_lists_every_setting_as_the_fields_say() -> None:
    assert settings_table() in README.read_text(), "README's table should be:\n" + (
        settings_table()
    )


def test_a_driver_reads_what_the_api_gives_it(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("PCD_MLFLOW_LOCAL_DIR", raising=False)  # the default: beside the studies
    settings = Settings(
        mlflow_tracking_uri="http://mlflow:5000",
        ray_address="127.0.0.2:6379",
        optuna_storage="postgresql+psycopg://o@db/optuna",
        tune_storage="s3://pcd/tune",
        data_root=tmp_path / "d",
        teacher_root=Path("t"),
        local_cpus=3,
        cluster_autoscales=True,
        trial_checkpoint_max_mb=5,
    )
    runner = RunnerSettings.from_env(settings.driver_env())
    assert runner == RunnerSettings(
        tracking_uri="http://mlflow:5000",
        optuna_storage="postgresql+psycopg://o@db/optuna",
        ray_address="127.0.0.2:6379",
        tune_storage="s3://pcd/tune",
        data_root=tmp_path / "d",
        teacher_root=Path("t").resolve(),
        num_cpus=3,
        cluster_autoscales=True,
        trial_checkpoint_max_mb=5.0,
        mlflow_local_dir=Path("runs").resolve(),  # the studies folder's parent
    )
    jobs = Settings(ray_address="http://head:8265")
    assert RunnerSettings.from_env(jobs.driver_env()).ray_address == "auto"  # joins the cluster


def test_unset_roots_are_the_same_folders_everywhere(monkeypatch) -> None:
    """The teacher root was `teachers` for the API but the working folder for a driver
    started without PCD_TEACHER_ROOT and for `pcd study run`."""
    from pcd_core.data import default_data_root

    monkeypatch.delenv("PCD_DATA_ROOT", raising=False)
    monkeypatch.delenv("PCD_TEACHER_ROOT", raising=False)
    api = Settings()
    assert default_data_root() == api.data_root  # pcd_core's own default (it has no settings)
    runner = RunnerSettings.from_env({})
    assert (runner.data_root, runner.teacher_root) == (api.data_root, api.teacher_root)
    assert (runner.data_root, runner.teacher_root) == (Path("data"), Path("teachers"))
    assert RunnerSettings() == runner


@pytest.mark.parametrize("option", ["data_root", "teacher_root"])
def test_pcd_study_run_defaults_to_the_same_roots(option) -> None:
    from service.cli import app

    run = typer.main.get_command(app).commands["study"].commands["run"]  # type: ignore[attr-defined]
    param = next(p for p in run.params if p.name == option)
    assert Path(param.default) == getattr(Settings(), option)
    assert param.envvar == f"PCD_{option.upper()}"
