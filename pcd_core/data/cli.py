"""``pcd data ...``: dataset commands (a typer sub-app of pcd_core's commands)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pcd_core.cli_errors import USAGE_ERROR, fail
from pcd_core.data.datasets import DATASET_NAMES, load_dataset
from pcd_core.data.download import ARCHIVES, download_dataset
from pcd_core.data.errors import DatasetError

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
        Path | None, typer.Option("--data-root", help="folder to download and unpack into")
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
        fail("--data-root is required: the folder to download and unpack into", USAGE_ERROR)
    try:
        folder = download_dataset(name, folder, url=url, md5=md5, progress=progress and not quiet)
    except (DatasetError, ValueError, OSError) as exc:
        fail(str(exc) or type(exc).__name__)
    typer.echo(str(folder))


@data_app.command("info")
def info(
    name: Annotated[str, typer.Argument(help=f"one of: {', '.join(DATASET_NAMES)}")],
    data_root: Annotated[Path | None, typer.Option("--data-root", help="data folder")] = None,
    split: Annotated[str, typer.Option("--split", help="train or test")] = "train",
    root: Annotated[
        Path | None, typer.Option("--root", hidden=True, help="deprecated: use --data-root")
    ] = None,
) -> None:
    """Load a split and print its size, shape, classes and normalisation statistics."""
    try:
        data = load_dataset(name, split, data_root or root)
    except (DatasetError, ValueError, OSError) as exc:
        fail(str(exc) or type(exc).__name__)
    c, h, w = data.images.shape[1:]
    typer.echo(f"{data.name} {split}: {len(data)} images, {c}x{h}x{w}, {data.num_classes} classes")
    typer.echo("mean " + " ".join(f"{m:.4f}" for m in data.mean))
    typer.echo("std  " + " ".join(f"{s:.4f}" for s in data.std))
