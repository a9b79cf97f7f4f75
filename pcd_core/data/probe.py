"""Whether a data set is where its loader will look, and its number of classes, without
loading it: what a service can check when a study is submitted. Messages name files relative
to the data root, never the root itself."""

from __future__ import annotations

from pathlib import Path

from pcd_core.data.datasets import (
    _CIFAR,
    _idx_candidates,
    _idx_search_dirs,
    _list_classes,
    default_data_root,
)
from pcd_core.data.errors import DatasetError

IDX_CLASSES = 10
DIGITS_CLASSES = 10


def dataset_classes(name: str, root: Path | None, default_root: Path | None = None) -> int:
    """The number of classes of data set ``name`` under ``root`` (the folder a loader is
    given; None: where it looks by default, with ``default_root`` standing for
    ``$PCD_DATA_ROOT``). DatasetError if its files are not there."""
    if name == "digits":
        return DIGITS_CLASSES
    if name in _CIFAR:
        return _cifar_classes(name, root or default_root or default_data_root())
    if name in ("mnist", "fashion_mnist"):
        dirs = _idx_search_dirs(name, root)
        if root is None and default_root is not None:
            dirs += _idx_search_dirs(name, default_root)
        return _idx_classes(name, dirs)
    if name == "image_folder":
        return _folder_classes(root)
    raise DatasetError(f"unknown data set {name!r}")


def _cifar_classes(name: str, base: Path) -> int:
    spec = _CIFAR[name]
    folder = base / spec.folder if (base / spec.folder).is_dir() else base
    needed = (*spec.train_files, *spec.test_files, spec.meta_file)
    missing = [f for f in needed if not (folder / f).is_file()]
    if missing:
        raise DatasetError(
            f"{spec.title} not found: expected {spec.folder}/ with {', '.join(needed)} "
            f"(missing {', '.join(missing)}); `pcd data download {name}` fetches it"
        )
    return spec.num_classes


def _idx_classes(name: str, dirs: list[Path]) -> int:
    for prefix in ("train", "t10k"):
        for kind in ("images", "labels"):
            names = _idx_candidates(kind, prefix)
            if not any((d / n).is_file() for d in dirs for n in names):
                raise DatasetError(f"{name} IDX file {names[0]}[.gz] not found")
    return IDX_CLASSES


def _folder_classes(root: Path | None) -> int:
    if root is None:
        raise DatasetError("image_folder needs a root: a folder with train/ and test/")
    for split in ("train", "test"):
        if not (root / split).is_dir():
            raise DatasetError(f"image folder has no {split}/ (expected {split}/<class>/*.png)")
    classes = _list_classes(root / "train")
    if not classes:
        raise DatasetError("image folder's train/ has no class folders")
    return len(classes)
