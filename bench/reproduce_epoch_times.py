"""Epoch times of the CIFAR-100 reproduction on this machine, for a GPU-hours estimate.

Writes a full-size *random* CIFAR-100 archive (50,000 + 10,000 images; timing only), then times,
with the trainer and the standard recipe (batch 64, the whole training split, test evaluated
after every epoch as ``pcd reproduce`` does): one CE epoch of each teacher and one epoch of each
pair with the chosen methods (the teacher runs in every step: no logit bank). A warm-up epoch
comes first and is not counted. One run on the GPU at a time.

    python bench/reproduce_epoch_times.py --out times.json [--methods kd,pcd] [--pairs all]
"""

from __future__ import annotations

import argparse
import json
import pickle
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pcd_core.data import load_dataset
from pcd_core.models import build_model
from pcd_core.train import TrainConfig, train
from pcd_core.train.checkpoint import save_teacher
from pcd_core.train.trainer import dataset_fingerprint
from search_spaces.reproduce import load_benchmark


def write_archive(root: Path, n_train: int = 50_000, n_test: int = 10_000) -> Path:
    rng = np.random.default_rng(0)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for split, n in (("train", n_train), ("test", n_test)):
        fine = np.arange(n) % 100
        obj = {
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"fine_labels": fine.tolist(),
            b"coarse_labels": (fine // 5).tolist(),
            b"filenames": [b"x.png"] * n,
        }
        (folder / split).write_bytes(pickle.dumps(obj, protocol=2))
    names = {
        b"fine_label_names": [f"c{i}".encode() for i in range(100)],
        b"coarse_label_names": [f"g{i}".encode() for i in range(20)],
    }
    (folder / "meta").write_bytes(pickle.dumps(names, protocol=2))
    return root


def epoch_seconds(config: TrainConfig, out: Path) -> float:
    """Wall time of one epoch (train + test evaluation + checkpoint)."""
    marks: list[float] = []

    def progress(epoch: int, epochs: int, metrics: object) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        marks.append(time.perf_counter())

    train(config, out, stop_after=1, progress=progress)
    return marks[-1] - marks[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--pairs", default="all")
    parser.add_argument("--methods", default="kd,pcd")
    parser.add_argument("--n-train", type=int, default=50_000, help="smaller: a smoke test")
    parser.add_argument("--n-test", type=int, default=10_000)
    args = parser.parse_args()
    bench = load_benchmark("cifar100")
    pairs = bench.pairs if args.pairs == "all" else [bench.pair(p) for p in args.pairs.split(",")]
    methods = args.methods.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="pcd-times-"))
    root = write_archive(tmp / "data", args.n_train, args.n_test)
    fingerprint = dataset_fingerprint(load_dataset("cifar100", "train", root))
    data = {"name": "cifar100", "root": root, "val_fraction": 0.0, "seed": 0}
    base = {"data": data, "epochs": bench.epochs, "test_each_epoch": True}
    results: dict[str, object] = {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "epochs": bench.epochs,
        "train_images": args.n_train,
        "teachers": {},
        "pairs": {},
    }
    epoch_seconds(TrainConfig(arch="resnet8x4", **base), tmp / "warmup")
    teachers: dict[str, Path] = {}
    for arch in dict.fromkeys(p.teacher for p in pairs):
        seconds = epoch_seconds(TrainConfig(arch=arch, **base), tmp / f"t-{arch}")
        results["teachers"][arch] = seconds  # type: ignore[index]
        path = tmp / f"{arch}.pt"
        save_teacher(
            path,
            build_model(arch, 100),
            {
                "arch": arch,
                "num_classes": 100,
                "in_channels": 3,
                "image_size": 32,
                "dataset": "cifar100",
                "dataset_fingerprint": fingerprint,
                "test_top1": 0.0,
                "val_top1": -1.0,
                "epochs": 1,
            },
        )
        teachers[arch] = path
        print(f"teacher {arch}: {seconds:.1f} s/epoch", flush=True)
    for pair in pairs:
        row = {}
        for method in methods:
            config = TrainConfig(
                arch=pair.student,
                method=method,
                method_options=bench.method_options(pair, method),
                teacher=teachers[pair.teacher] if method != "ce" else None,
                **base,
            )
            row[method] = epoch_seconds(config, tmp / f"{pair.id}-{method}")
            print(f"{pair.id} {method}: {row[method]:.1f} s/epoch", flush=True)
        results["pairs"][pair.id] = row  # type: ignore[index]
        args.out.write_text(json.dumps(results, indent=1))
    args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
