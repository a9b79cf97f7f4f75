"""Small data sets in the standard on-disk layouts, for tests and the GPU check."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np


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
