"""Fixture factories that write small data sets in the standard on-disk layouts."""

from __future__ import annotations

import gzip
import pickle
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def _write_pickle(path: Path, obj: object) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=2))


def write_cifar(
    root: Path, name: str = "cifar100", n_train: int = 50, n_test: int = 20, seed: int = 0
) -> Path:
    """Write a small CIFAR-10/100 python folder under ``root``; returns the folder."""
    rng = np.random.default_rng(seed)
    if name == "cifar10":
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        per = n_train // 5
        for i in range(1, 6):
            data = rng.integers(0, 256, (per, 3072), dtype=np.uint8)
            labels = (np.arange(per) + i) % 10
            _write_pickle(
                folder / f"data_batch_{i}",
                {b"batch_label": b"batch", b"data": data, b"labels": labels.tolist()},
            )
        data = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
        _write_pickle(
            folder / "test_batch", {b"data": data, b"labels": (np.arange(n_test) % 10).tolist()}
        )
        _write_pickle(
            folder / "batches.meta", {b"label_names": [f"class{i}".encode() for i in range(10)]}
        )
        return folder
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for split, n in (("train", n_train), ("test", n_test)):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine = (np.arange(n) * 7) % 100
        _write_pickle(
            folder / split,
            {
                b"filenames": [f"{i}.png".encode() for i in range(n)],
                b"data": data,
                b"fine_labels": fine.tolist(),
                b"coarse_labels": (fine // 5).tolist(),
            },
        )
    _write_pickle(
        folder / "meta",
        {
            b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
        },
    )
    return folder


def idx_bytes(arr: np.ndarray, magic: int | None = None) -> bytes:
    """Encode a uint8 array as an IDX file."""
    if magic is None:
        magic = 0x0800 | arr.ndim
    return struct.pack(">I", magic) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def write_idx(root: Path, prefix: str, n: int, *, gz: bool, seed: int = 0) -> tuple[Path, Path]:
    """Write ``<prefix>-images-idx3-ubyte`` and labels (gzip or plain) with n 28x28 images."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    root.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    paths = []
    for kind, arr in (("images-idx3", images), ("labels-idx1", labels)):
        p = root / f"{prefix}-{kind}-ubyte{suffix}"
        raw = idx_bytes(arr)
        p.write_bytes(gzip.compress(raw) if gz else raw)
        paths.append(p)
    return paths[0], paths[1]


def write_image_folder(
    root: Path,
    classes: tuple[str, ...] = ("cat", "dog", "emu"),
    per_class: int = 4,
    *,
    size: tuple[int, int] = (12, 10),
    gray: bool = False,
    splits: tuple[str, ...] = ("train", "test"),
) -> Path:
    """Write root/<split>/<class>/ images, alternating PNG and JPEG."""
    rng = np.random.default_rng(0)
    for split in splits:
        for ci, cls in enumerate(classes):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(per_class):
                shape = (size[1], size[0]) if gray else (size[1], size[0], 3)
                arr = rng.integers(0, 256, shape, dtype=np.uint8)
                arr[0, 0] = ci * 40
                img = Image.fromarray(arr)
                ext = "png" if i % 2 == 0 else ("jpg" if i % 4 == 1 else "jpeg")
                img.save(d / f"img{i}.{ext}")
    return root


@pytest.fixture
def cifar_writer() -> Callable[..., Path]:
    return write_cifar


@pytest.fixture
def idx_writer() -> Callable[..., tuple[Path, Path]]:
    return write_idx


@pytest.fixture
def idx_encoder() -> Callable[..., bytes]:
    return idx_bytes


@pytest.fixture
def folder_writer() -> Callable[..., Path]:
    return write_image_folder
