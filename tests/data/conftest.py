"""Fixture factories that write small data sets in the standard on-disk layouts."""

from __future__ import annotations

import gzip
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pcd_core.testing.datasets import write_cifar


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
