"""The data options of `pcd teacher train` / `pcd distill` on a user's image folder:
augmentation off unless asked, the images' own size, PCD_DATA_ROOT, the per-data-set epochs
default, and no empty run folder left by a failed run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner, Result

from pcd_core.data.datasets import DATA_ROOT_ENV
from pcd_core.train import load_teacher
from service.cli import app

runner = CliRunner()


def invoke(*args: object) -> Result:
    return runner.invoke(app, [str(a) for a in args])


def one_error_line(result: Result, code: int) -> str:
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def _folder(root: Path, side: int = 28) -> Path:
    """train/ and test/ of three classes of gray side x side images."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for ci, cls in enumerate(("a", "b", "c")):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(4):
                arr = rng.integers(0, 60, (side, side), dtype=np.uint8)
                arr[:, ci * 8 : ci * 8 + 8] = 250  # the class is where the stripe is
                Image.fromarray(arr).save(d / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _folder(tmp_path_factory.mktemp("images"))


def _config(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())["config"]


def _teacher(folder: Path, out: Path, *extra: object) -> Result:
    return invoke(
        "teacher", "train", "--arch", "mlp_32", "--dataset", "image_folder",
        "--data-root", folder, "--batch-size", 8, "--out", out, "--quiet", *extra,
    )  # fmt: skip


def test_image_folder_defaults_no_augment_own_size_20_epochs(folder: Path, tmp_path: Path) -> None:
    result = _teacher(folder, tmp_path / "t")
    assert result.exit_code == 0, result.output
    # the chosen settings are printed before training
    assert "image_folder: augment none, image size own, 20 epochs (default for image_folder" in (
        result.stderr
    )
    config = _config(tmp_path / "t")
    assert config["epochs"] == 20
    assert config["data"]["augment"] == "none" and config["data"]["image_size"] is None
    _, info = load_teacher(tmp_path / "t" / "teacher.pt")
    assert (info.image_size, info.in_channels) == (28, 1)  # built at 28, not resized to 32


def test_augment_and_image_size_flags_reach_the_config(folder: Path, tmp_path: Path) -> None:
    flags = ["--augment", "flip", "--image-size", 16, "--epochs", 1]
    result = _teacher(folder, tmp_path / "t", *flags)
    assert result.exit_code == 0, result.output
    assert "augment flip, image size 16, 1 epochs\n" in result.stderr
    assert _config(tmp_path / "t")["data"] | {"root": None} == {
        "name": "image_folder", "root": None, "val_fraction": 0.1, "seed": 0,
        "augment": "flip", "image_size": 16, "streaming": False, "num_workers": 2,
    }  # fmt: skip
    _, info = load_teacher(tmp_path / "t" / "teacher.pt")
    assert info.image_size == 16
    # the student sees what the teacher saw: 16x16 without asking again
    args = ["--teacher", tmp_path / "t" / "teacher.pt", "--student", "mlp_32", "--method", "kd"]
    out = tmp_path / "s"
    result = invoke("distill", *args, "--data-root", folder, "--epochs", 1, "--out", out, "-q")
    assert result.exit_code == 0, result.output
    assert _config(out)["data"]["image_size"] == 16 and _config(out)["data"]["augment"] == "none"
    # and a size the teacher was not trained at is refused, naming the flag
    out = tmp_path / "s28"
    result = invoke("distill", *args, "--data-root", folder, "--image-size", 28, "--out", out)
    line = one_error_line(result, 1)
    assert "teacher was trained on 16x16 images" in line and "--image-size 16" in line
    assert not out.exists()  # a failed run leaves no folder


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--augment", "rotate"], "data.augment: unknown augmentation 'rotate'; choose one of"),
        (["--dataset", "digits", "--image-size", "16"], "image_size applies to image_folder"),
    ],
)
def test_bad_data_options_are_one_line(tmp_path: Path, args: list[str], expected: str) -> None:
    result = invoke("teacher", "train", "--arch", "mlp_32", *args, "--out", tmp_path / "x")
    assert expected in one_error_line(result, 2)
    assert not (tmp_path / "x").exists()


def test_data_root_from_the_environment(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(DATA_ROOT_ENV, raising=False)
    out = tmp_path / "runs" / "t"
    args = ["teacher", "train", "--arch", "mlp_32", "--dataset", "image_folder", "--epochs", 1]
    line = one_error_line(invoke(*args, "--out", out), 2)
    assert "image_folder needs --data-root (or PCD_DATA_ROOT)" in line
    assert "train/<class_name>" in line
    assert not (tmp_path / "runs").exists()
    monkeypatch.setenv(DATA_ROOT_ENV, str(folder))
    result = invoke(*args, "--out", out, "-q")
    assert result.exit_code == 0, result.output
    assert _config(out)["data"]["root"] == str(folder)
    # other data sets' loaders read the variable themselves (after Debian's Fashion-MNIST
    # folder): their configs keep no root, as before
    digits = invoke("teacher", "train", "--arch", "mlp_32", "--epochs", 1, "--out", out / "d", "-q")
    assert digits.exit_code == 0, digits.output
    assert _config(out / "d")["data"]["root"] is None
    lone = tmp_path / "lone.pt"  # a teacher outside its run folder: no recorded root
    lone.write_bytes((out / "teacher.pt").read_bytes())
    for checkpoint in (out / "teacher.pt", lone):
        evaluated = invoke("eval", checkpoint)
        assert evaluated.exit_code == 0, evaluated.output
        assert "image_folder test (12 images)" in evaluated.stdout
    info = invoke("data", "info", "image_folder")  # every command that takes --data-root
    assert info.exit_code == 0, info.output
    assert "image_folder train: 12 images, 1x28x28, 3 classes" in info.stdout
    help_text = invoke("teacher", "train", "--help").stdout
    assert "PCD_DATA_ROOT" in help_text and "crop+flip" in help_text


def test_data_info_names_the_split_folders(tmp_path: Path) -> None:
    root = _folder(tmp_path / "imgs")
    (root / "val" / "a").mkdir(parents=True)
    result = invoke("data", "info", "image_folder", "--data-root", root)
    assert result.exit_code == 0, result.output
    assert "expects train/, test/ (exactly these names)" in result.stdout
    assert "train/: found, 3 class folders" in result.stdout
    assert "ignored (not a split name): val/" in result.stdout
    (root / "test").rename(root / "testing")
    result = invoke("data", "info", "image_folder", "--data-root", root, "--split", "test")
    assert "test/: missing" in result.stdout and "testing/" in result.stdout
    assert result.exit_code == 1 and "image folder split not found" in result.stderr


def test_failed_runs_leave_no_empty_folder(folder: Path, tmp_path: Path) -> None:
    other = _folder(tmp_path / "other", side=20)  # not the data the teacher saw
    teacher = tmp_path / "t"
    assert _teacher(folder, teacher, "--epochs", 1).exit_code == 0
    args = ["--teacher", teacher / "teacher.pt", "--student", "mlp_32", "--data-root", other]
    new = tmp_path / "new" / "deeper" / "run"
    result = invoke("distill", *args, "--image-size", 28, "--out", new, "-q")
    assert "teacher was trained on" in one_error_line(result, 1)
    assert not (tmp_path / "new").exists()  # neither the folder nor the parents made for it
    existing = tmp_path / "mine"
    existing.mkdir()
    result = invoke("distill", *args, "--image-size", 28, "--out", existing, "-q")
    assert result.exit_code == 1 and existing.is_dir()  # a user's folder is never removed


def test_a_run_failing_in_its_first_epoch_leaves_no_folder(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pcd_core.data import DatasetError
    from pcd_core.train import trainer

    def unreadable(run: object, epoch: int) -> None:
        assert (tmp_path / "a" / "run" / "metrics.jsonl").is_file()  # the run had started
        raise DatasetError("an image went unreadable")

    monkeypatch.setattr(trainer, "_run_epoch", unreadable)
    result = _teacher(folder, tmp_path / "a" / "run")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.splitlines()[-1] == "error: an image went unreadable"
    assert not (tmp_path / "a").exists()
