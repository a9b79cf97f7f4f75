"""The fused PCD loss on the device, for bench/gpu_check.py (its check ``fused_loss``).

- agreement: the fused kernel against pcd_loss's vectorised path (``PCD_FUSED=0``), fp32 (and
  bf16) logits, value and gradient, every weighting, ranking and standardisation, at
  B=1024, C=1000 and B=256, C=100 (acceptance: 1e-5 in fp32);
- speed: forward+backward medians of kd_loss, the fused and the vectorised pcd_loss (joint S=3
  and S=5) at the same sizes, and their ratios to kd_loss (acceptance at S=3: fused <= 1.5x
  kd at B=1024, C=1000; <= 2x at B=256, C=100);
- launches and host syncs (CUDA): kernels per forward+backward call (profiler), and a fused
  call under ``torch.cuda.set_sync_debug_mode("error")``;
- training step: resnet32x4 -> resnet8x4 at batch 256, bf16 + channels_last, the step of kd,
  of pcd S=3 fused and of pcd S=3 vectorised, interleaved (acceptance: fused <= 1.05x kd).

Run it alone with ``python bench/gpu_check.py --only fused_loss``. On a CPU the kernel runs in
Triton's interpreter (set here before triton is imported) at tiny sizes: a rehearsal of this
code whose timings mean nothing.
"""

from __future__ import annotations

import itertools
import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from pcd_core.losses import JointSchedule, fused_pcd, kd_loss, pcd_loss

ACCEPT_AGREEMENT = 1e-5
ACCEPT_LOSS_RATIO = {(1024, 1000): 1.5, (256, 100): 2.0}
ACCEPT_STEP_RATIO = 1.05


@contextmanager
def fused_on(dev: torch.device) -> Iterator[None]:
    """pcd_loss takes the fused path on ``dev`` (a CPU: under Triton's interpreter)."""
    previous = fused_pcd.FUSED_DEVICE_TYPES
    fused_pcd.FUSED_DEVICE_TYPES = previous | {dev.type}
    try:
        yield
    finally:
        fused_pcd.FUSED_DEVICE_TYPES = previous


def _prepare(dev: torch.device) -> str | None:
    """Why the fused kernel cannot run here (None: it can)."""
    if dev.type != "cuda":
        os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is first imported
    probe = torch.zeros(2, 4, device=dev)
    return fused_pcd.unsupported_reason(probe, probe, [2])


def _value_and_grad(fn: Callable[..., torch.Tensor], s: torch.Tensor, t: torch.Tensor, **kw):
    s = s.detach().clone().requires_grad_(True)
    loss = fn(s, t, **kw)
    loss.backward()
    return loss.detach().float(), s.grad.detach().float()


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b| (on the device; one sync per call, outside any timing)."""
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def agreement(dev: torch.device, quick: bool) -> dict[str, Any]:
    """Every option at B=256, C=100; three at B=1024, C=1000 (each new option set is a kernel
    compilation of a few seconds; the computation does not depend on C beyond the block)."""
    options = [
        {"weighting": w, "standardize": std}
        for w, std in itertools.product(("paper", "released", "none"), (False, True))
    ] + [{"ranking": "teacher"}, {"ranking": "none"}, {"split": "geometric", "stage_norm": True}]
    wide = [options[0], options[3], options[6]]  # paper; released standardised; teacher
    cases = [(4, 20, options[::3])] if quick else [(256, 100, options), (1024, 1000, wide)]
    dtypes = (torch.float32, torch.bfloat16)
    plan = [(b, c, o, d) for b, c, opts in cases for o in opts for d in dtypes]
    rows, worst = [], {"loss": 0.0, "grad": 0.0}
    for b, c, opts, dtype in plan:
        if dtype == torch.bfloat16 and opts != options[0]:
            continue  # bf16: one case per size (the path is the same after the load)
        gen = torch.Generator().manual_seed(b + c)
        s = (torch.randn(b, c, generator=gen) * 3).to(dev, dtype)
        t = (torch.randn(b, c, generator=gen) * 3).to(dev, dtype)
        kw = {"temperature": 2.0 if opts.get("standardize") else 4.0, **opts}
        kw["group_counts"] = JointSchedule(3).group_counts(1)
        fused = _value_and_grad(fused_pcd.fused_pcd_loss, s, t, **kw)
        with fused_pcd.vectorised_path():
            vectorised = _value_and_grad(pcd_loss, s, t, **kw)
        row = {
            "B": b,
            "C": c,
            "dtype": str(dtype).removeprefix("torch."),
            "options": opts,
            "loss_rel_err": _rel(fused[0], vectorised[0]),
            "grad_rel_err": _rel(fused[1], vectorised[1]),
        }
        if dtype == torch.float32:
            worst["loss"] = max(worst["loss"], row["loss_rel_err"])
            worst["grad"] = max(worst["grad"], row["grad_rel_err"])
        rows.append(row)
    return {
        "rows": rows,
        "worst_fp32": worst,
        "ok": max(worst.values()) <= ACCEPT_AGREEMENT,
        "note": "standardised rows rank by keys that differ by rounding between the paths; a "
        "near-tie crossing a group boundary moves a class (rare, a larger grad error)",
    }


def _fwd_bwd(
    fn: Callable[..., torch.Tensor], s: torch.Tensor, t: torch.Tensor, **kw: Any
) -> Callable[[], None]:
    def run() -> None:
        s.grad = None
        fn(s, t, temperature=4.0, **kw).backward()

    return run


def speed(dev: torch.device, quick: bool, time_ms: Callable[..., float]) -> dict[str, Any]:
    sizes = [(4, 20)] if quick else [(1024, 1000), (256, 100)]
    warm, reps, inner = (0, 1, 1) if quick else (5, 15, 10)
    rows = []
    for b, c in sizes:
        gen = torch.Generator().manual_seed(0)
        s = (torch.randn(b, c, generator=gen) * 3).to(dev).requires_grad_(True)
        t = (torch.randn(b, c, generator=gen) * 3).to(dev)

        def vectorised(*args: Any, **kw: Any) -> torch.Tensor:
            with fused_pcd.vectorised_path():
                return pcd_loss(*args, **kw)

        ms = {"kd_loss": time_ms(_fwd_bwd(kd_loss, s, t), dev, warm, reps, inner)}
        for stages in (3, 5):
            counts = JointSchedule(stages).group_counts(1)
            for label, fn in (("fused", fused_pcd.fused_pcd_loss), ("vectorised", vectorised)):
                key = f"pcd S={stages} {label}"
                run = _fwd_bwd(fn, s, t, group_counts=counts)
                ms[key] = time_ms(run, dev, warm, reps, inner)
        ratio = {k: round(v / ms["kd_loss"], 3) for k, v in ms.items()}
        limit = ACCEPT_LOSS_RATIO.get((b, c))
        rows.append(
            {
                "B": b,
                "C": c,
                "ms": {k: round(v, 4) for k, v in ms.items()},
                "ratio_to_kd": ratio,
                "fused_over_vectorised_S3": round(
                    ms["pcd S=3 fused"] / ms["pcd S=3 vectorised"], 3
                ),
                "accept_fused_S3_over_kd": limit,
                "ok": None if limit is None else ratio["pcd S=3 fused"] <= limit,
            }
        )
    return {"rows": rows, "timing": f"median of {reps} x {inner} calls after {warm} warm-up"}


def launches_and_syncs(dev: torch.device) -> dict[str, Any]:
    """CUDA kernels per forward+backward call, and a fused call with sync checking on."""
    from torch.profiler import ProfilerActivity, profile

    s = torch.randn(256, 100, device=dev, requires_grad=True)
    t = torch.randn(256, 100, device=dev)
    calls: dict[str, Callable[[], torch.Tensor]] = {
        "kd_loss": lambda: kd_loss(s, t, temperature=4.0),
    }
    for stages in (1, 3, 6):
        counts = JointSchedule(stages).group_counts(1)
        calls[f"pcd S={stages} fused"] = lambda c=counts: fused_pcd.fused_pcd_loss(
            s, t, temperature=4.0, group_counts=c
        )
        calls[f"pcd S={stages} vectorised"] = lambda c=counts: _vectorised_call(s, t, c)
    kernels: dict[str, int] = {}
    for label, call in calls.items():
        call().backward()  # warm: compiled kernels, cached layouts
        torch.cuda.synchronize(dev)
        s.grad = None  # no accumulation kernel in the count
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            call().backward()
            torch.cuda.synchronize(dev)
        kernels[label] = sum(1 for e in prof.events() if e.device_type.name == "CUDA")
    try:
        torch.cuda.set_sync_debug_mode("error")
        calls["pcd S=3 fused"]().backward()
        sync = "no sync"
    except RuntimeError as err:
        sync = f"SYNC: {str(err).strip().splitlines()[0][:200]}"
    finally:
        torch.cuda.set_sync_debug_mode(0)
    return {"cuda_kernels_fwd_bwd": kernels, "fused_host_sync": sync}


def _vectorised_call(s: torch.Tensor, t: torch.Tensor, counts: list[int]) -> torch.Tensor:
    with fused_pcd.vectorised_path():
        return pcd_loss(s, t, temperature=4.0, group_counts=counts)


def train_step(
    dev: torch.device, quick: bool, teacher_arch: str, student_arch: str, rig_cls: type
) -> dict[str, Any]:
    """Step time of kd, pcd S=3 fused and pcd S=3 vectorised, interleaved rounds."""
    from pcd_core.models import build_model

    on_cuda = dev.type == "cuda"
    batch = 8 if quick else 256
    warm, rounds, steps = (0, 1, 1) if quick else (5, 5, 20)
    fmt = torch.channels_last if on_cuda else torch.contiguous_format
    torch.manual_seed(1)
    teacher = build_model(teacher_arch, 100).to(dev, memory_format=fmt)
    rigs = {
        label: rig_cls(dev, teacher, student_arch, name, opts, batch, batch * 16, False, on_cuda)
        for label, (name, opts) in {
            "kd": ("kd", {}),
            "pcd S=3 fused": ("pcd", {"stages": 3}),
            "pcd S=3 vectorised": ("pcd", {"stages": 3}),
        }.items()
    }

    def run(label: str, n: int) -> None:
        rig = rigs[label]
        if label.endswith("vectorised"):
            with fused_pcd.vectorised_path():
                for _ in range(n):
                    rig.step(rig.next_batch())
        else:
            for _ in range(n):
                rig.step(rig.next_batch())

    for label in rigs:
        run(label, warm)
    times: dict[str, list[float]] = {label: [] for label in rigs}
    for _ in range(rounds):
        for label in rigs:
            if on_cuda:
                torch.cuda.synchronize(dev)
            start = time.perf_counter()
            run(label, steps)
            if on_cuda:
                torch.cuda.synchronize(dev)
            times[label].append((time.perf_counter() - start) / steps * 1e3)
    ms = {label: statistics.median(v) for label, v in times.items()}
    ratio = {label: round(v / ms["kd"], 3) for label, v in ms.items()}
    return {
        "teacher": teacher_arch,
        "student": student_arch,
        "batch": batch,
        "ms_per_step": {k: round(v, 3) for k, v in ms.items()},
        "ratio_to_kd": ratio,
        "accept_fused_over_kd": ACCEPT_STEP_RATIO,
        "ok": ratio["pcd S=3 fused"] <= ACCEPT_STEP_RATIO,
    }


def check_fused(
    dev: torch.device,
    quick: bool,
    teacher_arch: str,
    student_arch: str,
    *,
    rig_cls: type,
    time_ms: Callable[..., float],
) -> dict[str, Any]:
    """gpu_check's ``fused_loss`` check (``rig_cls`` and ``time_ms`` are gpu_check's)."""
    reason = _prepare(dev)
    on_cuda = dev.type == "cuda"
    if reason is not None:  # on CUDA a failure; on a CPU only the rehearsal is lost
        return {"status": "error" if on_cuda else "skipped: no CUDA", "error": reason}
    res: dict[str, Any] = {"interpreter": not on_cuda}
    with fused_on(dev):
        res["agreement"] = agreement(dev, quick)
        res["speed"] = speed(dev, quick, time_ms)
        if on_cuda:
            res["launches"] = launches_and_syncs(dev)
        res["train_step"] = train_step(dev, quick, teacher_arch, student_arch, rig_cls)
    verdicts = [res["agreement"]["ok"]]
    if on_cuda:  # timings under the interpreter mean nothing
        verdicts += [r["ok"] for r in res["speed"]["rows"] if r["ok"] is not None]
        verdicts += [res["train_step"]["ok"], res["launches"]["fused_host_sync"] == "no sync"]
    res["acceptance_met"] = all(verdicts)
    res["status"] = "ok"
    return res


def summary_lines(res: dict[str, Any]) -> list[str]:
    """A few readable lines for gpu_check's log."""
    if "agreement" not in res:
        return []
    w = res["agreement"]["worst_fp32"]
    lines = [f"    fused vs vectorised fp32: loss {w['loss']:.1e}  grad {w['grad']:.1e}"]
    for r in res["speed"]["rows"]:
        cells = "  ".join(f"{k} {v:.3f} ms ({r['ratio_to_kd'][k]}x)" for k, v in r["ms"].items())
        lines.append(f"    B={r['B']} C={r['C']}: {cells}")
    step = res["train_step"]
    lines.append(f"    step ratio to kd (batch {step['batch']}): {step['ratio_to_kd']}")
    if "launches" in res:
        lines.append(f"    kernels per fwd+bwd: {res['launches']['cuda_kernels_fwd_bwd']}")
        lines.append(f"    fused host sync: {res['launches']['fused_host_sync']}")
    lines.append(f"    acceptance met: {res['acceptance_met']} (interpreter: {res['interpreter']})")
    return lines


def headline(res: dict[str, Any]) -> dict[str, Any]:
    """The numbers to read first."""
    if "agreement" not in res:
        return {"status": res.get("status")}
    return {
        "fused_vs_vectorised_fp32": res["agreement"]["worst_fp32"],
        "loss_ratio_to_kd": {
            f"B={r['B']} C={r['C']}": r["ratio_to_kd"] for r in res["speed"]["rows"]
        },
        "step_ratio_to_kd": res["train_step"]["ratio_to_kd"],
        "acceptance_met": res["acceptance_met"],
    }
