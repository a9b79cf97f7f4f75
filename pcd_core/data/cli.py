"""``pcd data ...``: dataset commands (a typer sub-app of pcd_core's commands)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pcd_core.cli_errors import USAGE_ERROR, fail
from pcd_core.data.datasets import (
    DATA_ROOT_ENV,
    DATASET_NAMES,
    IMAGE_EXTENSIONS,
    IMAGE_FOLDER_NEEDS_ROOT,
    SPLITS,
    load_dataset,
)
from pcd_core.data.download import ARCHIVES, download_dataset
from pcd_core.data.errors import DatasetError

# --data-root of every command: set it once in the environment instead.
DataRootOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-root",
        envvar=DATA_ROOT_ENV,
        help="data folder: CIFAR/MNIST archives, or an image folder (train/ and test/ with "
        "one folder per class); not needed for digits",
    ),
]

data_app = typer.Typer(
    help="Datasets: download the CIFAR archives, inspect what a loader sees.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@data_app.callback()
def _data() -> None:
    """Datasets: download the CIFAR archives, inspect what a loader sees."""


@data_app.command("download")
def download(
    name: Annotated[str, typer.Argument(help=f"one of: {', '.join(ARCHIVES)}")],
    data_root: Annotated[
        Path | None,
        typer.Option(
            "--data-root", envvar=DATA_ROOT_ENV, help="folder to download and unpack into"
        ),
    ] = None,
    url: Annotated[str | None, typer.Option("--url", help="archive URL (a mirror)")] = None,
    md5: Annotated[str | None, typer.Option("--md5", help="expected md5 of the archive")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
    root: Annotated[
        Path | None, typer.Option("--root", hidden=True, help="deprecated: use --data-root")
    ] = None,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", hidden=True, help="deprecated: use -q")
    ] = True,
) -> None:
    """Download, verify (md5) and unpack a dataset archive into DATA_ROOT."""
    folder = data_root or root
    if folder is None:
        fail(
            f"--data-root is required (or set {DATA_ROOT_ENV}): the folder to download and "
            "unpack into",
            USAGE_ERROR,
        )
    try:
        folder = download_dataset(name, folder, url=url, md5=md5, progress=progress and not quiet)
    except (DatasetError, ValueError, OSError) as exc:
        fail(str(exc) or type(exc).__name__)
    typer.echo(str(folder))


@data_app.command("info")
def info(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help=f"one of: {', '.join(DATASET_NAMES)}")],
    data_root: DataRootOpt = None,
    split: Annotated[str, typer.Option("--split", help="train or test")] = "train",
    image_size: Annotated[
        int | None,
        typer.Option("--image-size", help="image_folder: resize to NxN (default: own size)"),
    ] = None,
    root: Annotated[
        Path | None, typer.Option("--root", hidden=True, help="deprecated: use --data-root")
    ] = None,
) -> None:
    """Load a split and print its size, shape, classes and normalisation statistics; for an
    image folder, first which split folders it expects and which it found."""
    folder = data_root or root
    key = name.strip().lower().replace("-", "_")
    source = ctx.get_parameter_source("data_root")  # from PCD_DATA_ROOT: the loaders read it
    if source is not None and source.name == "ENVIRONMENT" and key != "image_folder":
        folder = root  # themselves, after the places they look first
    if key == "image_folder":
        if folder is None:
            fail(IMAGE_FOLDER_NEEDS_ROOT, USAGE_ERROR)
        for line in folder_layout(folder):
            typer.echo(line)
    elif image_size is not None:
        fail("--image-size applies to image_folder data only", USAGE_ERROR)
    try:
        kw = {} if image_size is None else {"image_size": image_size}
        data = load_dataset(name, split, folder, **kw)
    except (DatasetError, ValueError, OSError) as exc:
        fail(str(exc) or type(exc).__name__)
    c, h, w = data.images.shape[1:]
    typer.echo(f"{data.name} {split}: {len(data)} images, {c}x{h}x{w}, {data.num_classes} classes")
    typer.echo("mean " + " ".join(f"{m:.4f}" for m in data.mean))
    typer.echo("std  " + " ".join(f"{s:.4f}" for s in data.std))


def folder_layout(root: Path) -> list[str]:
    """What an image folder must hold and what ``root`` holds: lines for ``pcd data info``."""
    exts = "|".join(e.lstrip(".") for e in IMAGE_EXTENSIONS)
    lines = [
        f"image folder {root}: expects {', '.join(s + '/' for s in SPLITS)} (exactly these "
        f"names), each with one folder per class holding *.{exts} images; classes are the "
        "folder names under train/"
    ]
    if not root.is_dir():
        return [*lines, f"  {root} is not a folder"]
    present = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    for split in SPLITS:
        if split in present:
            classes = [p for p in (root / split).iterdir() if p.is_dir()]
            lines.append(f"  {split}/: found, {len(classes)} class folders")
        else:
            lines.append(f"  {split}/: missing")
    ignored = [p for p in present if p not in SPLITS]
    if ignored:
        lines.append(
            f"  ignored (not a split name): {', '.join(p + '/' for p in ignored)}; the "
            "validation split is held out from train/ (--val-fraction)"
        )
    return lines
