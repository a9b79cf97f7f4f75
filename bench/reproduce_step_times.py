"""Training-step times of the CIFAR-100 reproduction's models on a GPU, for a GPU-hours estimate.

The trainer's own step (pcd_core.train.train_step; no Ray or data pipeline): one synthetic
batch of 64 on the GPU, bf16 autocast and channels_last as the trainer uses on CUDA, SGD. Per
teacher: a ce step. Per pair: a kd step and a pcd step (joint schedule, no warm-up ramp;
teacher forward inside, S by family) and the teacher's forward alone. Mean of 150 steps after
20 warm-up steps. Data augmentation, the per-epoch test evaluation and checkpoints are not
included. (The run in bench/results/reproduce_step_times_h100.json used the same operations,
written compactly.)

    python bench/reproduce_step_times.py --out times.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from pcd_core.data import Batch
from pcd_core.methods import build_method
from pcd_core.models import build_model
from pcd_core.train import Distiller, EpochTally, train_step

PAIRS = [  # (teacher, student, PCD stages: 3 same family, 5 cross family)
    ("resnet32x4", "resnet8x4", 3),
    ("vgg13", "vgg8", 3),
    ("wrn_40_2", "wrn_40_1", 3),
    ("wrn_40_2", "wrn_16_2", 3),
    ("resnet56", "resnet20", 3),
    ("resnet110", "resnet32", 3),
    ("resnet110", "resnet20", 3),
    ("resnet32x4", "ShuffleV2", 5),
    ("resnet32x4", "wrn_16_2", 5),
    ("resnet32x4", "wrn_40_2", 5),
    ("wrn_40_2", "resnet8x4", 5),
    ("wrn_40_2", "MobileNetV2", 5),
    ("vgg13", "MobileNetV2", 5),
    ("ResNet50", "MobileNetV2", 5),
]


def _timed(step: Callable[[], object], steps: int, warmup: int = 20) -> float:
    """Mean seconds per call of ``step`` after ``warmup`` calls (synchronised)."""
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def _sgd_step(
    batch: Batch, student: nn.Module, teacher: nn.Module | None, method: str, options: dict
) -> Callable[[], None]:
    """One pcd_core.train.train_step of ``method`` on ``batch``: bf16 autocast, SGD."""
    distiller = Distiller(student, teacher, build_method(method, options))
    opt = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    tally = EpochTally(batch.images.device)
    return lambda: train_step(distiller, opt, batch, tally, epoch=1, total_epochs=240, amp=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=150)
    args = parser.parse_args()
    device, cl = torch.device("cuda"), torch.channels_last
    x = torch.randn(64, 3, 32, 32, device=device).to(memory_format=cl)
    y = torch.randint(0, 100, (64,), device=device)
    batch = Batch(x, y, torch.arange(64, device=device), step=0)

    def model(name: str) -> nn.Module:
        return build_model(name, 100).to(device, memory_format=cl)

    out = {"dev": torch.cuda.get_device_name(), "torch": torch.__version__, "teacher": {}}
    out["pair"] = {}
    for arch in dict.fromkeys(t for t, _, _ in PAIRS):
        out["teacher"][arch] = _timed(_sgd_step(batch, model(arch), None, "ce", {}), args.steps)
    for t, s, stages in PAIRS:
        teacher, student = model(t).eval(), model(s)

        def teacher_forward(teacher=teacher) -> torch.Tensor:
            with torch.no_grad(), torch.autocast("cuda", torch.bfloat16):
                return teacher(x).float()

        pcd = {"stages": stages, "warmup": 0}  # the full term from the first step, as timed
        out["pair"][f"{t}-{s}"] = {
            "kd": _timed(_sgd_step(batch, student, teacher, "kd", {}), args.steps),
            "pcd": _timed(_sgd_step(batch, student, teacher, "pcd", pcd), args.steps),
            "teacher_fwd": _timed(teacher_forward, args.steps),
        }
        print(t, s, out["pair"][f"{t}-{s}"], flush=True)
    args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
