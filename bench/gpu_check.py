"""One-shot GPU check of the CUDA code paths: correctness, bf16, host syncs, speed, end to end.

Written to run right the first time on a device we get once: every check is isolated (an
error is recorded, the next check runs), has its own time limit, and the JSON is rewritten
after every check so a killed run still leaves what it measured. Imports only ``pcd_core``
(with ``pcd_core.testing.reference``, the naive float64 reference of the losses), torch, numpy
and the standard library (plus ``bench/loss_bench.py`` for the loss benchmark, loaded by file
path: bench/ is a folder of scripts, not a package).

Checks, in order (cheap and essential first):

- ``loss_correctness``: pcd_loss (joint/phased stage lists, S=1/3/5, every weighting, ranking,
  split, standardisation, detach_weight, stage_norm), kd_loss, dkd_loss, released_pcd_loss
  and the methods' summed losses on the device, in float64 and float32, against the naive
  float64 reference (or the same function in float64 on the CPU): value and gradient, max
  relative error.
- ``bf16_autocast``: bf16 logits under autocast: every loss is fp32, finite, with finite
  gradients, and equals the float64 reference of the same (bf16-rounded) values.
- ``no_host_sync`` (CUDA only): the trainer's own ``train_step`` (pcd_core.train.step) under
  ``torch.cuda.set_sync_debug_mode("error")`` after a warm-up, for ce/kd/dkd/pcd and kd/pcd
  with logit-bank logits; then every sync site of one step and of a whole ``train_epoch``
  listed in "warn" mode (the end-of-epoch ``.item()`` calls are the expected ones).
- ``train_e2e``: the public ``train(...)`` on a generated CIFAR-100-format folder: a ce
  teacher, a pcd S=3 student (amp and channels_last at their device defaults), a kd student
  with a logit bank; metrics, and where the models' weights live and in which memory format.
- ``train_throughput``: resnet32x4 (frozen) -> resnet8x4, real DeviceLoader batches, bf16 +
  channels_last on CUDA: images/s per method, ratios, and the CIFAR-100 epoch / 240-epoch
  time they imply (a projection: training steps only).
- ``fused_loss``: the fused Triton pcd_loss against its vectorised path and kd_loss, and the
  training-step ratio (bench/fused_check.py).
- ``loss_bench``: forward+backward medians (CUDA events) of kd_loss, pcd S=3/S=5 and the naive
  masked loop at B=256/1024 x C=100/1000, ratios, peak memory.
- ``step_capture``: the resnet32x4 -> resnet8x4 step (batch 256) of kd and pcd S=3 eager,
  with torch.compile'd models, with the whole forward_train compiled and as one captured CUDA
  graph, as ratios (bench/fused_check.py): which of them to adopt. Several compilations: run
  it alone with ``--only step_capture``.

    python bench/gpu_check.py --out gpu_check.json            # on the GPU machine
    python bench/gpu_check.py --quick --device cpu --out x.json   # CPU smoke run (tests)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import linecache
import math
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
import traceback
import types
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

META: dict[str, Any] = {}

# pcd_core.data imports httpx at module level, for downloads only (never used here). The run
# script carries its wheel; should it still be missing, a stub keeps the import working.
try:
    import httpx  # noqa: F401

    META["httpx"] = "installed"
except ImportError:  # pragma: no cover - device fallback
    _stub = types.ModuleType("httpx")

    class _HTTPError(Exception):
        pass

    def _no_network(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("httpx is stubbed by bench/gpu_check.py: no downloads here")

    _stub.HTTPError = _HTTPError  # type: ignore[attr-defined]
    _stub.stream = _no_network  # type: ignore[attr-defined]
    _stub.get = _no_network  # type: ignore[attr-defined]
    sys.modules["httpx"] = _stub
    META["httpx"] = "stubbed (not installed)"

from torch import nn  # noqa: E402

from pcd_core.data import DeviceLoader, random_image_data  # noqa: E402
from pcd_core.losses import (  # noqa: E402
    JointSchedule,
    PhasedSchedule,
    dkd_loss,
    kd_loss,
    pcd_loss,
    released_pcd_loss,
)
from pcd_core.methods import build_method  # noqa: E402
from pcd_core.models import build_model  # noqa: E402
from pcd_core.run_dir import RunDir  # noqa: E402
from pcd_core.testing import reference as ref  # noqa: E402
from pcd_core.testing.datasets import write_cifar  # noqa: E402
from pcd_core.train import (  # noqa: E402
    DataConfig,
    Distiller,
    EpochTally,
    TrainConfig,
    train,
    train_epoch,
    train_step,
)
from pcd_core.train import step as step_mod  # noqa: E402
from pcd_core.train import trainer as trainer_mod  # noqa: E402


def _load_file_module(name: str, path: Path) -> types.ModuleType:
    """Import a file by path (no reliance on ``tests``/``bench`` being packages on sys.path)."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


fused_check = _load_file_module("pcd_gpu_check_fused", ROOT / "bench" / "fused_check.py")


# ------------------------------------------------------------------------------ utilities
class CheckTimeout(Exception):
    pass


@contextmanager
def time_limit(seconds: int):
    """SIGALRM-based limit (main thread, POSIX); a no-op where SIGALRM is unavailable."""
    if seconds <= 0 or not hasattr(signal, "SIGALRM"):
        yield
        return

    def handler(signum, frame):
        raise CheckTimeout(f"check exceeded its {seconds} s limit")

    old = signal.signal(signal.SIGALRM, handler)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b| (both moved to CPU float64)."""
    a = a.detach().double().cpu()
    b = b.detach().double().cpu()
    denom = b.abs().max().item()
    diff = (a - b).abs().max().item()
    if denom == 0.0:
        return diff
    return diff / denom


def finite(x: float) -> float | None:
    return x if isinstance(x, float) and math.isfinite(x) else None


def rng_logits(batch: int, classes: int, seed: int, scale: float = 3.0) -> tuple:
    gen = torch.Generator().manual_seed(seed)
    s = torch.randn(batch, classes, generator=gen, dtype=torch.float64) * scale
    t = torch.randn(batch, classes, generator=gen, dtype=torch.float64) * scale
    y = torch.randint(0, classes, (batch,), generator=gen)
    return s, t, y


# ------------------------------------------------------------- a. correctness on the device
def _pcd_cases(quick: bool) -> list[tuple[str, int, int, float, dict[str, Any]]]:
    """(label, B, C, logit scale, pcd_loss kwargs)."""
    j = lambda s, d="both": JointSchedule(s, d).group_counts(1)  # noqa: E731
    if quick:
        return [
            ("joint S=3 paper abs_gap", 6, 20, 3.0, dict(group_counts=j(3))),
            (
                "phased S=5 k=2",
                6,
                20,
                3.0,
                dict(group_counts=PhasedSchedule(5, 10).group_counts(4)),
            ),
            (
                "joint S=3 released std T=2",
                6,
                20,
                3.0,
                dict(group_counts=j(3), weighting="released", standardize=True, temperature=2.0),
            ),
            (
                "joint S=1 none teacher geometric",
                6,
                20,
                3.0,
                dict(group_counts=j(1), weighting="none", ranking="teacher", split="geometric"),
            ),
        ]
    return [
        ("joint S=1", 16, 100, 3.0, dict(group_counts=j(1))),
        ("joint S=3 paper abs_gap", 16, 100, 3.0, dict(group_counts=j(3))),
        ("joint S=5", 16, 100, 3.0, dict(group_counts=j(5))),
        ("joint S=3 f2c", 16, 100, 3.0, dict(group_counts=j(3, "f2c"))),
        (
            "phased S=3 k=3 (epoch 1/6)",
            16,
            100,
            3.0,
            dict(group_counts=PhasedSchedule(3, 6).group_counts(1)),
        ),
        (
            "phased S=5 k=2 (epoch 4/10)",
            16,
            100,
            3.0,
            dict(group_counts=PhasedSchedule(5, 10).group_counts(4)),
        ),
        ("joint S=3 weighting=none", 16, 100, 3.0, dict(group_counts=j(3), weighting="none")),
        (
            "joint S=3 weighting=released",
            16,
            100,
            3.0,
            dict(group_counts=j(3), weighting="released"),
        ),
        (
            "joint S=3 standardize T=2",
            16,
            100,
            3.0,
            dict(group_counts=j(3), standardize=True, temperature=2.0),
        ),
        (
            "joint S=5 released standardize detach",
            16,
            100,
            3.0,
            dict(group_counts=j(5), weighting="released", standardize=True, detach_weight=True),
        ),
        ("joint S=3 ranking=teacher", 16, 100, 3.0, dict(group_counts=j(3), ranking="teacher")),
        ("joint S=3 ranking=none", 16, 100, 3.0, dict(group_counts=j(3), ranking="none")),
        (
            "joint S=3 geometric r=2",
            16,
            100,
            3.0,
            dict(group_counts=j(3), split="geometric", split_ratio=2.0),
        ),
        (
            "joint S=5 geometric r=1.5 stage_norm",
            16,
            100,
            3.0,
            dict(group_counts=j(5), split="geometric", split_ratio=1.5, stage_norm=True),
        ),
        ("joint S=3 detach_weight", 16, 100, 3.0, dict(group_counts=j(3), detach_weight=True)),
        ("joint S=3 logits x20", 16, 100, 20.0, dict(group_counts=j(3))),
        ("joint S=5 C=1000", 4, 1000, 3.0, dict(group_counts=j(5))),
        ("joint S=3 C=10 released", 16, 10, 3.0, dict(group_counts=j(3), weighting="released")),
    ]


# float64 on the device must agree with the reference to rounding; float32 to fp32 rounding
# amplified by the sums (measured on CPU: ~1e-6 for values, ~1e-5 for gradients).
TOL = {"float64": {"loss": 1e-9, "grad": 1e-8}, "float32": {"loss": 1e-4, "grad": 1e-3}}


def _value_and_grad(fn: Callable[..., torch.Tensor], s: torch.Tensor, t: torch.Tensor, *args):
    s = s.detach().clone().requires_grad_(True)
    loss = fn(s, t.detach(), *args)
    loss.backward()
    return loss.detach(), s.grad.detach()


def check_loss_correctness(dev: torch.device, quick: bool) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    failures: list[str] = []

    def compare(label: str, fn, ref_fn, s, t, *args, dtypes=("float64", "float32")):
        ref_loss, ref_grad = _value_and_grad(ref_fn, s.double().cpu(), t.double().cpu(), *[
            a.cpu() if isinstance(a, torch.Tensor) else a for a in args
        ])  # fmt: skip
        for dt in dtypes:
            dtype = getattr(torch, dt)
            loss, grad = _value_and_grad(
                fn,
                s.to(dev, dtype),
                t.to(dev, dtype),
                *[a.to(dev) if isinstance(a, torch.Tensor) else a for a in args],
            )
            row = {
                "case": label,
                "dtype": dt,
                "loss": float(loss.item()),
                "ref_loss": float(ref_loss.item()),
                "loss_rel_err": rel_err(loss, ref_loss),
                "grad_rel_err": rel_err(grad, ref_grad),
                "loss_dtype": str(loss.dtype),
                "grad_finite": bool(torch.isfinite(grad).all().item()),
                "grad_device": str(grad.device),
            }
            tol = TOL[dt]
            ok = (
                row["loss_rel_err"] <= tol["loss"]
                and row["grad_rel_err"] <= tol["grad"]
                and row["grad_finite"]
                and math.isfinite(row["loss"])
                and grad.device.type == dev.type
            )
            row["ok"] = ok
            if not ok:
                failures.append(f"{label} [{dt}]")
            rows.append(row)

    for i, (label, b, c, scale, kw) in enumerate(_pcd_cases(quick)):
        kw = dict(kw)
        temperature = kw.pop("temperature", 4.0)
        s, t, _ = rng_logits(b, c, seed=100 + i, scale=scale)
        # the reference gets the float32-rounded values too (same ranking up to rounding)
        s, t = s.float().double(), t.float().double()
        compare(
            f"pcd_loss {label} B={b} C={c}",
            lambda s_, t_, kw=kw, T=temperature: pcd_loss(s_, t_, temperature=T, **kw),
            lambda s_, t_, kw=kw, T=temperature: ref.ref_pcd_loss(s_, t_, temperature=T, **kw),
            s,
            t,
        )

    b, c = (6, 20) if quick else (32, 100)
    s, t, y = rng_logits(b, c, seed=7)
    s, t = s.float().double(), t.float().double()
    compare(
        f"kd_loss T=4 B={b} C={c}",
        lambda s_, t_: kd_loss(s_, t_, temperature=4.0),
        lambda s_, t_: ref.ref_kd_loss(s_, t_, 4.0),
        s,
        t,
    )
    compare(
        f"kd_loss standardize T=2 B={b} C={c}",
        lambda s_, t_: kd_loss(s_, t_, temperature=2.0, standardize=True),
        lambda s_, t_: ref.ref_kd_loss(ref.ref_standardize(s_), ref.ref_standardize(t_), 2.0),
        s,
        t,
    )
    # no independent reference for these: the same function in float64 on the CPU
    dkd = lambda s_, t_, y_: dkd_loss(s_, t_, y_, alpha=1.0, beta=8.0, temperature=4.0)  # noqa: E731
    compare(f"dkd_loss a=1 b=8 T=4 B={b} C={c} (vs CPU fp64)", dkd, dkd, s, t, y)
    rel = lambda s_, t_: released_pcd_loss(s_, t_, temperature=4.0, stages=3)  # noqa: E731
    compare(f"released_pcd_loss S=3 B={b} C={c} (vs CPU fp64)", rel, rel, s, t)

    # large batches (many atomics per segment on the GPU) against the vectorised loss itself
    # in float64 on the CPU (the naive reference is too slow at this size)
    big = [(64, 20, 3, {})] if quick else [
        (512, 100, 3, {}),
        (256, 1000, 5, {"weighting": "released", "standardize": True}),
    ]  # fmt: skip
    for b_big, c_big, stages, extra in big:
        s_big, t_big, _ = rng_logits(b_big, c_big, seed=11)
        fn = lambda s_, t_, S=stages, kw=extra: pcd_loss(  # noqa: E731
            s_, t_, temperature=4.0, group_counts=JointSchedule(S).group_counts(1), **kw
        )
        compare(f"pcd_loss joint S={stages} {extra} B={b_big} C={c_big} (vs CPU fp64)", fn, fn,
                s_big.float().double(), t_big.float().double())  # fmt: skip

    # the methods' summed loss terms (schedules resolved by epoch, warm-up ramps applied)
    method_cases = [
        ("ce", {}, 3),
        ("kd", {}, 3),
        ("dkd", {}, 3),
        ("pcd", {"stages": 3}, 3),
        ("pcd", {"stages": 3, "schedule": "phased"}, 5),
        ("pcd", {"stages": 5, "schedule": "released"}, 3),
        (
            "pcd",
            {"stages": 5, "weighting": "released", "standardize": True, "temperature": 2.0},
            30,
        ),
    ]
    for name, options, epoch in method_cases:
        method = build_method(name, options)

        def total(s_, t_, y_, method=method, epoch=epoch):
            return sum(method.losses(s_, t_, y_, epoch=epoch, total_epochs=12).values())

        compare(f"method {name} {options} epoch {epoch}/12 (vs CPU fp64)", total, total, s, t, y)

    worst = {
        dt: {
            "loss": max((r["loss_rel_err"] for r in rows if r["dtype"] == dt), default=0.0),
            "grad": max((r["grad_rel_err"] for r in rows if r["dtype"] == dt), default=0.0),
        }
        for dt in ("float64", "float32")
    }
    return {
        "status": "ok" if not failures else "fail",
        "tolerance": TOL,
        "worst_rel_err": worst,
        "failures": failures,
        "cases": rows,
    }


# ------------------------------------------------------------------------ a'. bf16 autocast
def check_bf16_autocast(dev: torch.device, quick: bool) -> dict[str, Any]:
    b, c, hidden = (8, 20, 16) if quick else (64, 100, 128)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(b, hidden, generator=gen).to(dev)
    t_bf16 = (torch.randn(b, c, generator=gen) * 3).to(dev).to(torch.bfloat16)
    y = torch.randint(0, c, (b,), generator=gen).to(dev)
    j3, j5 = JointSchedule(3).group_counts(1), JointSchedule(5).group_counts(1)
    losses: dict[str, tuple[Callable, Callable]] = {
        "kd_loss": (
            lambda s, t: kd_loss(s, t, temperature=4.0),
            lambda s, t: ref.ref_kd_loss(s, t, 4.0),
        ),
        "dkd_loss": (
            lambda s, t: dkd_loss(s, t, y, alpha=1.0, beta=8.0, temperature=4.0),
            lambda s, t: dkd_loss(s, t, y.cpu(), alpha=1.0, beta=8.0, temperature=4.0),
        ),
        "pcd_loss joint S=3 paper": (
            lambda s, t: pcd_loss(s, t, temperature=4.0, group_counts=j3),
            lambda s, t: ref.ref_pcd_loss(s, t, temperature=4.0, group_counts=j3),
        ),
        "pcd_loss joint S=5 released standardize T=2": (
            lambda s, t: pcd_loss(
                s, t, temperature=2.0, group_counts=j5, weighting="released", standardize=True
            ),
            lambda s, t: ref.ref_pcd_loss(
                s, t, temperature=2.0, group_counts=j5, weighting="released", standardize=True
            ),
        ),
        "released_pcd_loss S=3": (
            lambda s, t: released_pcd_loss(s, t, temperature=4.0, stages=3),
            lambda s, t: released_pcd_loss(s, t, temperature=4.0, stages=3),
        ),
    }
    for name, options in (("kd", {}), ("dkd", {}), ("pcd", {"stages": 3})):
        method = build_method(name, options)

        def total(s, t, method=method, yy=y):
            terms = method.losses(s, t, yy.to(s.device), epoch=5, total_epochs=12)
            for k, v in terms.items():
                if v.dtype != torch.float32 and v.dtype != torch.float64:
                    raise AssertionError(f"method {method.name} term {k} is {v.dtype}")
            return sum(terms.values())

        losses[f"method {name} {options}"] = (total, total)

    rows, failures = [], []
    for label, (fn, ref_fn) in losses.items():
        torch.manual_seed(0)
        layer = nn.Linear(hidden, c).to(dev)
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            s = layer(x)
            loss = fn(s, t_bf16)
        loss.backward()
        grad = layer.weight.grad
        expected = ref_fn(s.detach().double().cpu(), t_bf16.double().cpu())
        row = {
            "loss": label,
            "logits_dtype": str(s.dtype),
            "loss_dtype": str(loss.dtype),
            "loss_value": float(loss.item()),
            "finite": bool(torch.isfinite(loss).item()),
            "grad_finite": bool(grad is not None and torch.isfinite(grad).all().item()),
            "rel_err_vs_fp64_of_bf16_inputs": rel_err(loss, expected),
        }
        row["ok"] = (
            row["logits_dtype"] == "torch.bfloat16"
            and row["loss_dtype"] == "torch.float32"
            and row["finite"]
            and row["grad_finite"]
            and row["rel_err_vs_fp64_of_bf16_inputs"] <= 1e-4
        )
        if not row["ok"]:
            failures.append(label)
        rows.append(row)
    return {"status": "ok" if not failures else "fail", "failures": failures, "cases": rows}


# --------------------------------------------------------------------- b. no host syncs
STEP_METHODS: dict[str, tuple[str, dict[str, Any], bool]] = {
    # label: (method, options, teacher logits from a logit bank)
    "ce": ("ce", {}, False),
    "kd": ("kd", {}, False),
    "dkd": ("dkd", {}, False),
    "pcd S=3": ("pcd", {"stages": 3}, False),
    "pcd S=5 released-weighting std": (
        "pcd",
        {"stages": 5, "weighting": "released", "standardize": True, "temperature": 2.0},
        False,
    ),
    "kd + logit bank": ("kd", {}, True),
    "pcd S=3 + logit bank": ("pcd", {"stages": 3}, True),
}


class _Rig:
    """A student/teacher pair, an optimizer and a DeviceLoader, as the trainer sets them up."""

    def __init__(self, dev, teacher, student_arch, method_name, options, batch, n, bank, amp):
        fmt = torch.channels_last if dev.type == "cuda" else torch.contiguous_format
        self.dev, self.amp, self.batch = dev, amp, batch
        torch.manual_seed(0)
        self.student = build_model(student_arch, 100).to(dev, memory_format=fmt)
        self.method = build_method(method_name, options)
        self.distiller = Distiller(
            self.student, teacher if self.method.needs_teacher else None, self.method
        ).train()
        self.optimizer = torch.optim.SGD(
            self.student.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4
        )
        self.loader = DeviceLoader(
            random_image_data(n),
            None,
            batch,
            shuffle=True,
            augment=True,
            seed=0,
            device=dev,
            channels_last=dev.type == "cuda",
        )
        self.bank = None
        if bank and self.method.needs_teacher:
            gen = torch.Generator().manual_seed(1)
            self.bank = (torch.randn(n, 100, generator=gen) * 3).to(torch.float16).to(dev)
        self.epoch = 0
        self._it = iter(())
        self.tally = EpochTally(dev)

    def next_batch(self):
        try:
            return next(self._it)
        except StopIteration:
            self.epoch += 1
            self._it = iter(self.loader.epoch(self.epoch))
            return next(self._it)

    def step(self, batch) -> None:
        """The trainer's own step (epoch 5 of 240: past every warm-up ramp)."""
        train_step(
            self.distiller,
            self.optimizer,
            batch,
            self.tally,
            epoch=5,
            total_epochs=240,
            amp=self.amp,
            bank_logits=self.bank,
        )

    def epoch_pass(self, epoch: int) -> tuple[dict[str, float], float]:
        """The trainer's own epoch loop over this rig's loader."""
        return train_epoch(
            self.distiller,
            self.optimizer,
            self.loader,
            epoch=epoch,
            total_epochs=240,
            amp=self.amp,
            bank_logits=self.bank,
        )


def _sync_sites(records: list[warnings.WarningMessage]) -> list[dict[str, Any]]:
    sites: dict[tuple[str, int], dict[str, Any]] = {}
    for w in records:
        if "synchroniz" not in str(w.message):
            continue
        key = (str(w.filename), int(w.lineno))
        if key not in sites:
            sites[key] = {
                "file": os.path.relpath(key[0], ROOT) if key[0].startswith(str(ROOT)) else key[0],
                "line": key[1],
                "source": linecache.getline(key[0], key[1]).strip(),
                "count": 0,
            }
        sites[key]["count"] += 1
    return list(sites.values())


@contextmanager
def _sync_mode(dev: torch.device, mode: str):
    if dev.type != "cuda":
        yield
        return
    torch.cuda.synchronize(dev)
    torch.cuda.set_sync_debug_mode(mode)
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(0)


def check_no_host_sync(dev: torch.device, quick: bool, teacher_arch: str, student_arch: str):
    on_cuda = dev.type == "cuda"
    batch = 8 if quick else 64
    warm, steps = (1, 1) if quick else (3, 3)
    fmt = torch.channels_last if on_cuda else torch.contiguous_format
    torch.manual_seed(1)
    teacher = build_model(teacher_arch, 100).to(dev, memory_format=fmt)
    n = batch * (warm + steps + 1)  # one epoch: no epoch boundary inside the checked steps

    def rig(label: str) -> _Rig:
        name, options, bank = STEP_METHODS[label]
        return _Rig(dev, teacher, student_arch, name, options, batch, n, bank, amp=on_cuda)

    results = {label: _step_syncs(rig(label), warm, steps) for label in STEP_METHODS}
    problems = [label for label, entry in results.items() if entry.pop("_problem")]
    # the trainer's own epoch function: only its end-of-epoch .item() calls may sync
    epoch_report = {label: _epoch_syncs(rig(label)) for label in ("kd", "pcd S=3 + logit bank")}
    problems += [
        f"train_epoch {label}" for label, e in epoch_report.items() if e["unexpected_sites"]
    ]
    out: dict[str, Any] = {
        "batch": batch,
        "teacher": teacher_arch,
        "student": student_arch,
        "warmup_steps": warm,
        "checked_steps": steps,
        "steps": results,
        "train_epoch_warn_mode": epoch_report,
        "problems": problems,
    }
    if not on_cuda:
        out["status"] = "skipped: no CUDA"
        out["note"] = "sync debug mode needs CUDA; the step and epoch code ran on the CPU"
    else:
        out["status"] = "ok" if not problems else "fail"
    return out


def _step_syncs(rig: _Rig, warm: int, steps: int) -> dict[str, Any]:
    """``steps`` train_steps in "error" sync mode after ``warm`` ones, then one in "warn"
    mode listing every sync site (custom backward is Python: its lines show too)."""
    on_cuda = rig.dev.type == "cuda"
    entry: dict[str, Any] = {"_problem": False}
    for _ in range(warm):  # allocations, cached group layouts, cuDNN plans
        rig.step(rig.next_batch())
    try:  # strict: the first sync raises
        with _sync_mode(rig.dev, "error"):
            for _ in range(steps):
                rig.step(rig.next_batch())
        entry["error_mode"] = "no sync" if on_cuda else "not run (no CUDA); step code ran"
    except Exception as err:  # the sync check raises RuntimeError (c10::Error)
        tb = traceback.extract_tb(err.__traceback__)
        ours = [f for f in tb if str(ROOT) in f.filename]
        entry["error_mode"] = "SYNC"
        entry["error"] = str(err).strip().splitlines()[0][:300]
        entry["where"] = [
            f"{os.path.relpath(f.filename, ROOT)}:{f.lineno}: {f.line}" for f in ours[-4:]
        ]
        entry["_problem"] = True
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        with _sync_mode(rig.dev, "warn"):
            rig.step(rig.next_batch())
    entry["warn_mode_sites"] = _sync_sites(rec)
    entry["_problem"] = entry["_problem"] or bool(entry["warn_mode_sites"])
    return entry


def _epoch_syncs(rig: _Rig) -> dict[str, Any]:
    """Every sync site of a whole train_epoch (after a warm-up epoch), in "warn" mode."""
    rig.epoch_pass(1)  # warm-up epoch
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        with _sync_mode(rig.dev, "warn"):
            means, top1 = rig.epoch_pass(2)
    sites = _sync_sites(rec)
    batches = len(rig.loader)
    # the end-of-epoch .item() calls are by design; a site hit fewer times than there are
    # batches is per epoch (reported); one hit in every batch is a per-step sync (a failure)
    step_file = os.path.join(*Path(step_mod.__file__).parts[-3:])  # pcd_core/train/step.py
    end_of_epoch = [s for s in sites if s["file"].endswith(step_file) and ".item()" in s["source"]]
    others = [s for s in sites if s not in end_of_epoch]
    return {
        "batches": batches,
        "sites": sites,
        "end_of_epoch_item_sites": end_of_epoch,
        "per_epoch_sites": [s for s in others if s["count"] < batches],
        "unexpected_sites": [s for s in others if s["count"] >= batches],
        "losses": {k: finite(float(v)) for k, v in means.items()},
        "train_top1": top1,
    }


# ------------------------------------------------------------------------ e. train(...) e2e
def _describe_model(model: nn.Module) -> dict[str, Any]:
    params = list(model.parameters())
    conv = [p for p in params if p.dim() == 4]
    return {
        "devices": sorted({str(p.device) for p in params}),
        "param_dtypes": sorted({str(p.dtype) for p in params}),
        "conv_weights": len(conv),
        "conv_weights_channels_last": sum(
            p.is_contiguous(memory_format=torch.channels_last) for p in conv
        ),
        "conv_weights_contiguous_nchw": sum(p.is_contiguous() for p in conv),
    }


def check_train_e2e(dev: torch.device, quick: bool, teacher_arch: str, student_arch: str):
    on_cuda = dev.type == "cuda"
    n_train, n_test = (400, 100) if quick else (2560, 512)
    spied: dict[str, list] = {"student": [], "teacher": [], "student_out": []}
    orig_build, orig_load = trainer_mod.build_model, trainer_mod.load_teacher

    def spy_build(*args, **kwargs):
        model = orig_build(*args, **kwargs)
        spied["student"].append(model)
        model.register_forward_hook(
            lambda m, i, o: (
                spied["student_out"].append(str(o.dtype))
                if len(spied["student_out"]) < 10_000
                else None
            )
        )
        return model

    def spy_load(*args, **kwargs):
        model, info = orig_load(*args, **kwargs)
        spied["teacher"].append(model)
        return model, info

    runs: dict[str, Any] = {}
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="pcd-gpu-check-") as tmp:
        tmp_path = Path(tmp)
        write_cifar(tmp_path / "data", "cifar100", n_train, n_test)
        data = DataConfig(name="cifar100", root=tmp_path / "data", val_fraction=0.1)
        common = dict(data=data, batch_size=64, device=str(dev))
        trainer_mod.build_model, trainer_mod.load_teacher = spy_build, spy_load
        try:
            plans = [
                ("teacher ce", TrainConfig(arch=teacher_arch, method="ce", epochs=1, **common)),
            ]
            started = time.perf_counter()
            res = train(plans[0][1], tmp_path / "teacher")
            runs["teacher ce"] = _run_summary(res, time.perf_counter() - started, spied, on_cuda)
            artifact = res.teacher_artifact
            assert artifact is not None and artifact.is_file(), "no teacher artifact written"
            students = [
                (
                    "student pcd S=3",
                    TrainConfig(
                        arch=student_arch,
                        method="pcd",
                        method_options={"stages": 3},
                        teacher=artifact,
                        epochs=2,
                        **common,
                    ),
                ),
                (
                    "student kd + logit bank",
                    TrainConfig(
                        arch=student_arch,
                        method="kd",
                        teacher=artifact,
                        epochs=1,
                        logit_bank=tmp_path / "bank",
                        **common,
                    ),
                ),
            ]
            for label, config in students:
                for key in spied:
                    spied[key].clear()
                started = time.perf_counter()
                res = train(config, tmp_path / label.replace(" ", "_"))
                runs[label] = _run_summary(res, time.perf_counter() - started, spied, on_cuda)
            runs["student kd + logit bank"]["bank_files"] = sorted(
                str(p.relative_to(tmp_path)) for p in (tmp_path / "bank").rglob("*.pt")
            )
        finally:
            trainer_mod.build_model, trainer_mod.load_teacher = orig_build, orig_load
    for label, r in runs.items():
        problems.extend(f"{label}: {p}" for p in r.pop("_problems"))
    return {
        "status": "ok" if not problems else "fail",
        "device": str(dev),
        "expected": {"amp_bf16": on_cuda, "channels_last": on_cuda},
        "dataset": f"generated CIFAR-100 format, {n_train} train / {n_test} test, val 10%",
        "runs": runs,
        "problems": problems,
    }


def _run_summary(res, seconds: float, spied: dict[str, list], on_cuda: bool) -> dict[str, Any]:
    problems = []
    history = [h.scalars() for h in res.history]
    losses_finite = all(
        math.isfinite(v) for h in history for k, v in h.items() if k.startswith("loss_")
    )
    if not res.completed:
        problems.append("run did not complete")
    if not losses_finite:
        problems.append("non-finite loss")
    if not RunDir(res.out_dir).is_finished():
        problems.append(f"no {RunDir.SUMMARY}")
    out: dict[str, Any] = {
        "seconds": round(seconds, 2),
        "completed": res.completed,
        "history": history,
        "test": {
            k: {kk: vv for kk, vv in v.items() if kk != "per_class"} for k, v in res.test.items()
        },
        "losses_finite": losses_finite,
    }
    if spied["student"]:
        out["student_model"] = _describe_model(spied["student"][0])
        out["student_output_dtypes"] = sorted(set(spied["student_out"]))
        m = out["student_model"]
        if on_cuda:
            if m["devices"] != ["cuda:0"] and not all(d.startswith("cuda") for d in m["devices"]):
                problems.append(f"student weights on {m['devices']}")
            if m["conv_weights_channels_last"] != m["conv_weights"]:
                problems.append("student conv weights not all channels_last")
            if "torch.bfloat16" not in out["student_output_dtypes"]:
                problems.append("student never produced bf16 logits (autocast off?)")
    if spied["teacher"]:
        out["teacher_model"] = _describe_model(spied["teacher"][0])
        t = out["teacher_model"]
        if on_cuda and (
            not all(d.startswith("cuda") for d in t["devices"])
            or t["conv_weights_channels_last"] != t["conv_weights"]
        ):
            problems.append(f"teacher weights not cuda+channels_last: {t}")
    out["_problems"] = problems
    return out


# ------------------------------------------------------------------ d. training throughput
THROUGHPUT_METHODS = {
    "ce": ("ce", {}, False),
    "kd": ("kd", {}, False),
    "dkd": ("dkd", {}, False),
    "pcd S=3": ("pcd", {"stages": 3}, False),
    "pcd S=5": ("pcd", {"stages": 5}, False),
    "kd + logit bank": ("kd", {}, True),
    "pcd S=3 + logit bank": ("pcd", {"stages": 3}, True),
}


def check_train_throughput(dev: torch.device, quick: bool, teacher_arch: str, student_arch: str):
    on_cuda = dev.type == "cuda"
    batches = (8,) if quick else (64, 256)
    warm, rounds, steps = (1, 2, 1) if quick else (5, 3, 20)
    fmt = torch.channels_last if on_cuda else torch.contiguous_format
    torch.manual_seed(1)
    teacher = build_model(teacher_arch, 100).to(dev, memory_format=fmt)
    tables: dict[str, Any] = {}
    for batch in batches:
        n = batch * 16
        rigs = {
            label: _Rig(dev, teacher, student_arch, name, options, batch, n, bank, amp=on_cuda)
            for label, (name, options, bank) in THROUGHPUT_METHODS.items()
        }
        if on_cuda:
            torch.cuda.reset_peak_memory_stats(dev)
        for rig in rigs.values():
            for _ in range(warm):
                rig.step(rig.next_batch())
        times: dict[str, list[float]] = {label: [] for label in rigs}
        for _ in range(rounds):  # interleaved round-robin: drift hits every method alike
            for label, rig in rigs.items():
                sync(dev)
                start = time.perf_counter()
                for _ in range(steps):
                    rig.step(rig.next_batch())
                sync(dev)
                times[label].append((time.perf_counter() - start) / steps)
        med = {label: statistics.median(ts) for label, ts in times.items()}
        rows = {}
        for label, sec in med.items():
            ips = batch / sec
            epoch_s = 50_000 / ips
            rows[label] = {
                "ms_per_step": round(sec * 1e3, 3),
                "images_per_s": round(ips, 1),
                "ratio_to_ce": round(sec / med["ce"], 3),
                "ratio_to_kd": round(sec / med["kd"], 3),
                "cifar100_epoch_s_50k": round(epoch_s, 2),
                "projected_240_epochs_h": round(240 * epoch_s / 3600, 3),
            }
        tables[f"batch {batch}"] = {
            "methods": rows,
            "pcd3_over_kd": round(med["pcd S=3"] / med["kd"], 3),
            "pcd3_bank_over_kd_bank": round(
                med["pcd S=3 + logit bank"] / med["kd + logit bank"], 3
            ),
            "peak_memory_mb": round(torch.cuda.max_memory_allocated(dev) / 2**20, 1)
            if on_cuda
            else None,
        }
        del rigs
    return {
        "status": "ok",
        "teacher": teacher_arch,
        "student": student_arch,
        "amp_bf16": on_cuda,
        "channels_last": on_cuda,
        "timing": f"wall clock around {steps} steps (synchronised), median of {rounds} "
        f"interleaved rounds after {warm} warm-up steps; real DeviceLoader batches (crop+flip)",
        "projection_note": "PROJECTION: 50,000 training images per epoch x 240 epochs at the "
        "measured step rate; excludes evaluation, checkpointing and the logit-bank prefill",
        "batches": tables,
    }


# ------------------------------------------------------------------------- c. loss bench
def time_ms(fn: Callable[[], None], dev: torch.device, warm: int, reps: int, inner: int) -> float:
    """Median ms per call: CUDA events on the device, perf_counter on the CPU."""
    for _ in range(warm):
        fn()
    times = []
    sync(dev)
    for _ in range(reps):
        if dev.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(inner):
                fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / inner)
        else:
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            times.append((time.perf_counter() - t0) * 1e3 / inner)
    return statistics.median(times)


def check_loss_bench(dev: torch.device, quick: bool) -> dict[str, Any]:
    lb = _load_file_module("pcd_gpu_check_loss_bench", ROOT / "bench" / "loss_bench.py")
    sizes = [(32, 20)] if quick else [(256, 100), (256, 1000), (1024, 100), (1024, 1000)]
    warm, reps, inner = (1, 3, 1) if quick else (3, 15, 5)
    rows = []
    for b, c in sizes:
        gen = torch.Generator().manual_seed(0)
        s = (torch.randn(b, c, generator=gen) * 3).to(dev).requires_grad_(True)
        t = (torch.randn(b, c, generator=gen) * 3).to(dev)
        med: dict[str, float] = {}
        for label, (fn, kw) in lb._candidates(c).items():
            med[label] = time_ms(
                lambda fn=fn, kw=kw, s=s, t=t: lb._fwd_bwd(fn, s, t, **kw), dev, warm, reps, inner
            )
        row: dict[str, Any] = {"B": b, "C": c, "ms": {k: round(v, 4) for k, v in med.items()}}
        row["ratio_to_kd"] = {k: round(v / med["kd_loss"], 2) for k, v in med.items()}
        if "naive S=5" in med and "pcd joint S=5" in med:
            row["naive_over_pcd_S5"] = round(med["naive S=5"] / med["pcd joint S=5"], 2)
        if dev.type == "cuda" and c >= 5:
            counts = JointSchedule(5).group_counts(1)
            sync(dev)
            torch.cuda.reset_peak_memory_stats(dev)
            base = torch.cuda.memory_allocated(dev)
            lb._fwd_bwd(pcd_loss, s, t, temperature=4.0, group_counts=counts)
            sync(dev)
            row["pcd_S5_fwd_bwd_extra_peak_mb"] = round(
                (torch.cuda.max_memory_allocated(dev) - base) / 2**20, 2
            )
        rows.append(row)
    return {
        "status": "ok",
        "timing": f"forward+backward, median of {reps} x {inner} calls after {warm} warm-up "
        + ("(CUDA events)" if dev.type == "cuda" else "(perf_counter)"),
        "naive": "bench/loss_bench.py naive_masked_pcd: python loop, masked softmax per group",
        "rows": rows,
    }


def check_fused_loss(dev: torch.device, quick: bool, teacher_arch: str, student_arch: str):
    return fused_check.check_fused(
        dev, quick, teacher_arch, student_arch, rig_cls=_Rig, time_ms=time_ms
    )


def check_step_capture(dev: torch.device, quick: bool, teacher_arch: str, student_arch: str):
    return fused_check.check_step_capture(dev, quick, teacher_arch, student_arch, rig_cls=_Rig)


# ----------------------------------------------------------------------------- driver
def environment(dev: torch.device) -> dict[str, Any]:
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "numpy": np.__version__,
        "cuda_available": torch.cuda.is_available(),
        "device": str(dev),
        "threads": torch.get_num_threads(),
        **META,
    }
    try:
        import pydantic

        env["pydantic"] = pydantic.VERSION
    except Exception as err:  # pragma: no cover
        env["pydantic"] = f"unavailable: {err}"
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        env.update(
            gpu=torch.cuda.get_device_name(dev),
            capability=".".join(map(str, torch.cuda.get_device_capability(dev))),
            gpu_memory_gb=round(props.total_memory / 2**30, 1),
            cudnn=torch.backends.cudnn.version(),
            bf16_supported=torch.cuda.is_bf16_supported(),
        )
    return env


def summarise(name: str, res: dict[str, Any]) -> list[str]:
    """A few readable lines per check."""
    lines = [f"[{res.get('status')}] {name} ({res.get('seconds', '?')} s)"]
    if "error" in res and name not in ("no_host_sync",):
        lines.append(f"    ERROR {res['error']}")
    if name == "loss_correctness" and "worst_rel_err" in res:
        for dt, w in res["worst_rel_err"].items():
            lines.append(f"    worst rel err {dt}: loss {w['loss']:.2e}  grad {w['grad']:.2e}")
        lines += [f"    FAIL {f}" for f in res.get("failures", [])]
    elif name == "bf16_autocast" and "cases" in res:
        for r in res["cases"]:
            lines.append(
                f"    {r['loss']}: {r['logits_dtype']} -> {r['loss_dtype']}, "
                f"rel err {r['rel_err_vs_fp64_of_bf16_inputs']:.1e}, ok={r['ok']}"
            )
    elif name == "no_host_sync" and "steps" in res:
        for label, e in res["steps"].items():
            sites = ", ".join(f"{s['file']}:{s['line']}" for s in e["warn_mode_sites"]) or "-"
            lines.append(f"    step {label}: {e['error_mode']}; warn-mode sites: {sites}")
            if "where" in e:
                lines += [f"        {e['error']}"] + [f"        at {w}" for w in e["where"]]
        for label, e in res.get("train_epoch_warn_mode", {}).items():
            sites = "; ".join(f"{s['file']}:{s['line']} x{s['count']}" for s in e["sites"]) or "-"
            lines.append(f"    train_epoch {label}: syncs at {sites}")
            lines += [f"        UNEXPECTED {s}" for s in e["unexpected_sites"]]
    elif name == "train_e2e" and "runs" in res:
        for label, r in res["runs"].items():
            last = r["history"][-1] if r["history"] else {}
            lines.append(
                f"    {label}: {r['seconds']} s, epochs {len(r['history'])}, "
                f"val_top1 {last.get('val_top1', float('nan')):.2f}, "
                f"student {r.get('student_model', {}).get('devices')} "
                f"channels_last {r.get('student_model', {}).get('conv_weights_channels_last')}/"
                f"{r.get('student_model', {}).get('conv_weights')}, "
                f"logits {r.get('student_output_dtypes')}"
            )
        lines += [f"    PROBLEM {p}" for p in res.get("problems", [])]
    elif name == "train_throughput" and "batches" in res:
        for bl, tab in res["batches"].items():
            lines.append(f"    {bl}: pcd S=3 / kd = {tab['pcd3_over_kd']}")
            for label, r in tab["methods"].items():
                lines.append(
                    f"      {label:22s} {r['images_per_s']:>9.0f} img/s  {r['ms_per_step']:8.2f} ms"
                    f"  x{r['ratio_to_kd']:.2f} kd  epoch {r['cifar100_epoch_s_50k']:.1f} s"
                    f"  240 ep (projection) {r['projected_240_epochs_h']:.2f} h"
                )
    elif name == "fused_loss":
        lines += fused_check.summary_lines(res)
    elif name == "step_capture":
        lines += fused_check.capture_summary_lines(res)
    elif name == "loss_bench" and "rows" in res:
        for r in res["rows"]:
            cells = "  ".join(f"{k} {v:.3f} ms" for k, v in r["ms"].items())
            lines.append(f"    B={r['B']} C={r['C']}: {cells}")
    return lines


def headline(checks: dict[str, Any]) -> dict[str, Any]:
    """The numbers to read first."""
    out: dict[str, Any] = {k: v.get("status") for k, v in checks.items()}
    if "worst_rel_err" in checks.get("loss_correctness", {}):
        out["loss_worst_rel_err"] = checks["loss_correctness"]["worst_rel_err"]
    if "problems" in checks.get("no_host_sync", {}):
        out["sync_problems"] = checks["no_host_sync"]["problems"]
    if "fused_loss" in checks:
        out["fused_loss"] = fused_check.headline(checks["fused_loss"])
    if "step_capture" in checks:
        out["step_capture"] = fused_check.capture_headline(checks["step_capture"])
    for label, tab in checks.get("train_throughput", {}).get("batches", {}).items():
        m = tab["methods"]
        out[f"throughput {label}"] = {
            "img_s": {k: v["images_per_s"] for k, v in m.items()},
            "pcd3_over_kd": tab["pcd3_over_kd"],
            "projected_240_epochs_h (projection)": {
                k: v["projected_240_epochs_h"] for k, v in m.items()
            },
        }
    for row in checks.get("loss_bench", {}).get("rows", []):
        out[f"loss_bench B={row['B']} C={row['C']}"] = {
            "ratio_to_kd": row["ratio_to_kd"],
            "naive_over_pcd_S5": row.get("naive_over_pcd_S5"),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a CPU smoke run")
    parser.add_argument("--only", nargs="*", default=None, help="run only these checks")
    parser.add_argument("--teacher", default=None, help="default resnet32x4 (quick: resnet14)")
    parser.add_argument("--student", default=None, help="default resnet8x4 (quick: resnet8)")
    args = parser.parse_args(argv)

    dev = torch.device(args.device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    teacher = args.teacher or ("resnet14" if args.quick else "resnet32x4")
    student = args.student or ("resnet8" if args.quick else "resnet8x4")
    q = args.quick
    checks: list[tuple[str, Callable[[], dict[str, Any]], int]] = [
        ("loss_correctness", lambda: check_loss_correctness(dev, q), 120),
        ("bf16_autocast", lambda: check_bf16_autocast(dev, q), 60),
        ("fused_loss", lambda: check_fused_loss(dev, q, teacher, student), 240),
        ("no_host_sync", lambda: check_no_host_sync(dev, q, teacher, student), 120),
        ("train_e2e", lambda: check_train_e2e(dev, q, teacher, student), 150),
        ("train_throughput", lambda: check_train_throughput(dev, q, teacher, student), 150),
        ("loss_bench", lambda: check_loss_bench(dev, q), 120),
        ("step_capture", lambda: check_step_capture(dev, q, teacher, student), 420),
    ]
    if args.only:
        unknown = set(args.only) - {c[0] for c in checks}
        if unknown:
            parser.error(f"unknown checks {sorted(unknown)}")
        checks = [c for c in checks if c[0] in args.only]

    started = time.perf_counter()
    report: dict[str, Any] = {
        "format": "pcd-gpu-check/1",
        "args": {k: str(v) for k, v in vars(args).items()},
        "environment": {},
        "checks": {},
    }

    def write() -> None:
        report["total_seconds"] = round(time.perf_counter() - started, 1)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(args.out.suffix + ".tmp")
        tmp.write_text(json.dumps(report, indent=1, default=str) + "\n")
        os.replace(tmp, args.out)

    try:
        report["environment"] = environment(dev)
    except Exception as err:  # keep going: the checks say more than the environment
        report["environment"] = {"error": f"{type(err).__name__}: {err}"}
    print(json.dumps(report["environment"]), flush=True)
    write()
    for name, fn, limit in checks:
        print(f"--- {name} ...", flush=True)
        t0 = time.perf_counter()
        try:
            with time_limit(limit):
                res = fn()
        except BaseException as err:
            if isinstance(err, KeyboardInterrupt):
                report["checks"][name] = {"status": "error", "error": "interrupted"}
                write()
                raise
            res = {
                "status": "error",
                "error": f"{type(err).__name__}: {str(err)[:2000]}",
                "traceback": traceback.format_exc()[-6000:],
            }
        finally:
            if dev.type == "cuda":
                try:
                    torch.cuda.set_sync_debug_mode(0)
                except Exception:
                    pass
        res["seconds"] = round(time.perf_counter() - t0, 2)
        report["checks"][name] = res
        write()
        print("\n".join(summarise(name, res)), flush=True)
        if res.get("status") == "error":
            print(res.get("traceback", ""), flush=True)
        if dev.type == "cuda":
            torch.cuda.empty_cache()

    statuses = {k: v.get("status") for k, v in report["checks"].items()}
    report["summary"] = statuses
    try:
        report["headline"] = headline(report["checks"])
    except Exception as err:  # never lose the run over its summary
        report["headline"] = {"error": f"{type(err).__name__}: {err}"}
    write()
    print("headline:", json.dumps(report["headline"], indent=1))
    print("\n=== summary ===")
    for k, v in statuses.items():
        print(f"{k:18s} {v}")
    print(f"total {report['total_seconds']} s; JSON: {args.out}", flush=True)
    bad = [k for k, v in statuses.items() if v not in ("ok", "skipped: no CUDA")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
