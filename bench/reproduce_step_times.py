"""Training-step times of the CIFAR-100 reproduction's models on a GPU, for a GPU-hours estimate.

Pure torch over pcd_core.models and pcd_core.losses (no pydantic, Ray or data pipeline): one
synthetic batch of 64 on the GPU, bf16 autocast and channels_last as the trainer uses on CUDA,
SGD. Per teacher: a CE step. Per pair: a kd step and a pcd step (teacher forward inside, S by
family) and the teacher's forward alone. Mean of 150 steps after 20 warm-up steps. Data
augmentation, the per-epoch test evaluation and checkpoints are not included. (The run in
bench/results/reproduce_step_times_h100.json used the same operations, written compactly.)

    python bench/reproduce_step_times.py --out times.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from pcd_core.losses import JointSchedule, kd_loss, pcd_loss
from pcd_core.models import build_model

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=150)
    args = parser.parse_args()
    device, cl = "cuda", torch.channels_last
    x = torch.randn(64, 3, 32, 32, device=device).to(memory_format=cl)
    y = torch.randint(0, 100, (64,), device=device)

    def timed(step, n=args.steps, warmup=20) -> float:
        for _ in range(warmup):
            step()
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(n):
            step()
        torch.cuda.synchronize()
        return (time.perf_counter() - start) / n

    def model(name: str) -> torch.nn.Module:
        return build_model(name, 100).to(device, memory_format=cl)

    def sgd_step(m: torch.nn.Module, loss_fn):
        opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)

        def step() -> None:
            with torch.autocast("cuda", torch.bfloat16):
                loss = loss_fn(m(x).float())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return step

    out = {"dev": torch.cuda.get_device_name(), "torch": torch.__version__, "teacher": {}}
    out["pair"] = {}
    for arch in dict.fromkeys(t for t, _, _ in PAIRS):
        out["teacher"][arch] = timed(sgd_step(model(arch), lambda z: F.cross_entropy(z, y)))
    for t, s, stages in PAIRS:
        teacher, student = model(t).eval(), model(s)
        groups = JointSchedule(stages).group_counts(1)

        def t_logits(teacher=teacher) -> torch.Tensor:
            with torch.no_grad(), torch.autocast("cuda", torch.bfloat16):
                return teacher(x).float()

        def kd(z):
            return 0.1 * F.cross_entropy(z, y) + 0.9 * kd_loss(z, t_logits(), temperature=4.0)

        def pcd(z, groups=groups):
            return F.cross_entropy(z, y) + pcd_loss(
                z, t_logits(), temperature=4.0, group_counts=groups
            )

        out["pair"][f"{t}-{s}"] = {
            "kd": timed(sgd_step(student, kd)),
            "pcd": timed(sgd_step(student, pcd)),
            "teacher_fwd": timed(t_logits),
        }
        print(t, s, out["pair"][f"{t}-{s}"], flush=True)
    args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
