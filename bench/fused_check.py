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

Also gpu_check's check ``step_capture`` (:func:`check_step_capture`): the same training step of
kd and pcd S=3 eager, with torch.compile'd models, with the whole forward_train compiled, and
captured as one CUDA graph, side by side (a measurement: the trainer enables none of them).

Run it alone with ``python bench/gpu_check.py --only fused_loss``. On a CPU the kernel runs in
Triton's interpreter (set here before triton is imported) at tiny sizes: a rehearsal of this
code whose timings mean nothing.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch

from pcd_core.losses import JointSchedule, fused_pcd, kd_loss, pcd_loss
from pcd_core.models import build_model

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


# ------------------------------------------------- the step: eager, compiled, CUDA graph
# cheapest to build first: the compilations may run past the budget
STEP_VARIANTS = ("eager", "cuda graph", "compiled models", "compiled model+loss")
CAPTURE_METHODS = {"kd": ("kd", {}), "pcd S=3": ("pcd", {"stages": 3})}
# past this many seconds, variants not yet built are skipped (each compile takes a while)
CAPTURE_BUDGET_S = 300


def _variant_rig(
    variant: str, method: str, dev: torch.device, teachers: dict[str, Any], setup: dict[str, Any]
) -> Any:
    """A gpu_check rig whose step runs as ``variant`` (the graph is captured later)."""
    name, opts = CAPTURE_METHODS[method]
    teacher = teachers["compiled" if variant == "compiled models" else "eager"]
    rig = setup["rig_cls"](
        dev, teacher, setup["student"], name, opts, setup["batch"], setup["batch"] * 16, False,
        setup["amp"],
    )  # fmt: skip
    if variant == "compiled models":  # the loss stays eager: the fused kernel on CUDA
        rig.distiller.student = torch.compile(rig.distiller.student, backend=setup["backend"])
    elif variant == "compiled model+loss":  # pcd_loss traced: its vectorised path, compiled
        rig.distiller.forward_train = torch.compile(
            rig.distiller.forward_train, backend=setup["backend"]
        )
    return rig


def _captured_step(rig: Any, warm: int) -> Callable[[Any], None]:
    """The rig's whole train_step (forward, backward, SGD, metrics) as one CUDA graph; each
    call copies the batch into the captured input tensors and replays it.

    EpochTally's sums are rebound (not added in place), so a replayed tally keeps only the
    last step's terms: right for timing, to be made in-place before a trainer uses graphs."""
    dev = rig.dev
    batch = rig.next_batch()  # own copies: the loader may reuse its batch memory
    static = dataclasses.replace(
        batch, images=batch.images.clone(), labels=batch.labels.clone(), index=batch.index.clone()
    )
    side = torch.cuda.Stream(dev)
    side.wait_stream(torch.cuda.current_stream(dev))
    with torch.cuda.stream(side):  # warm-up off the default stream, as capture wants
        for _ in range(max(warm, 3)):
            rig.step(static)
    torch.cuda.current_stream(dev).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        rig.step(static)

    def step(batch: Any) -> None:
        static.images.copy_(batch.images)
        static.labels.copy_(batch.labels)
        static.index.copy_(batch.index)
        graph.replay()

    return step


def _build_variant(
    variant: str, dev: torch.device, teachers: dict[str, Any], setup: dict[str, Any]
) -> dict[str, tuple[Any, Callable[[Any], None]]]:
    """(rig, step function) per method, warmed up (compiled or captured)."""
    built = {}
    for method in CAPTURE_METHODS:
        rig = _variant_rig(variant, method, dev, teachers, setup)
        if variant == "cuda graph":
            step = _captured_step(rig, setup["warm"])
        else:
            step = rig.step
            for _ in range(setup["warm"]):  # the first compiled call compiles
                step(rig.next_batch())
        built[method] = (rig, step)
    return built


def _time_steps(
    built: dict[tuple[str, str], tuple[Any, Callable[[Any], None]]],
    dev: torch.device,
    rounds: int,
    steps: int,
) -> dict[tuple[str, str], float]:
    """Median ms per step of every (variant, method), interleaved rounds."""
    on_cuda = dev.type == "cuda"
    times: dict[tuple[str, str], list[float]] = {key: [] for key in built}
    for _ in range(rounds):
        for key, (rig, step) in built.items():
            batches = [rig.next_batch() for _ in range(steps)]
            if on_cuda:
                torch.cuda.synchronize(dev)
            start = time.perf_counter()
            for batch in batches:
                step(batch)
            if on_cuda:
                torch.cuda.synchronize(dev)
            times[key].append((time.perf_counter() - start) / steps * 1e3)
    return {key: statistics.median(v) for key, v in times.items()}


def check_step_capture(
    dev: torch.device, quick: bool, teacher_arch: str, student_arch: str, *, rig_cls: type
) -> dict[str, Any]:
    """gpu_check's ``step_capture`` check: the training step of kd and pcd S=3 eager, with
    torch.compile'd models (the loss eager: the fused kernel), with the whole forward_train
    compiled (pcd_loss traced: its vectorised path, compiled) and as one CUDA graph, side by
    side. A measurement only: neither is enabled in the trainer.

    On a CPU a rehearsal: tiny sizes, torch.compile with the ``eager`` backend (Dynamo's
    tracing without code generation), no graph; the timings mean nothing.
    """
    # the CPU rehearsal takes the loss's CUDA path too: the fused kernel in the interpreter
    # (set up before torch.compile imports triton)
    fused_here = _prepare(dev) is None
    on_cuda = dev.type == "cuda"
    batch = 4 if quick else 256
    warm, rounds, steps = (1, 1, 1) if quick else (5, 5, 20)
    setup = {
        "rig_cls": rig_cls,
        "student": student_arch,
        "batch": batch,
        "amp": on_cuda,
        "warm": warm,
        "backend": "inductor" if on_cuda else "eager",
    }
    fmt = torch.channels_last if on_cuda else torch.contiguous_format
    torch.manual_seed(1)
    teacher = build_model(teacher_arch, 100).to(dev, memory_format=fmt)
    teachers = {"eager": teacher, "compiled": torch.compile(teacher, backend=setup["backend"])}
    with fused_on(dev) if fused_here else nullcontext():
        variants, built = _build_variants(dev, teachers, setup)
        ms = _time_steps(built, dev, rounds, steps)
    _step_ratios(variants, ms)
    for (variant, method), (rig, _) in built.items():
        variants[variant].setdefault("last_loss", {})[method] = float(rig.tally.totals[-1])
    return {
        "status": "ok",
        "rehearsal": not on_cuda,
        "teacher": teacher_arch,
        "student": student_arch,
        "batch": batch,
        "compile_backend": setup["backend"],
        "fused_loss_in_eager_steps": fused_here,
        "timing": f"median of {rounds} rounds x {steps} steps after {warm} warm-up",
        "variants": variants,
        "fastest_pcd": min(
            (v for v in variants if "ms_per_step" in variants[v]),
            key=lambda v: variants[v]["ms_per_step"]["pcd S=3"],
            default=None,
        ),
    }


def _build_variants(
    dev: torch.device, teachers: dict[str, Any], setup: dict[str, Any]
) -> tuple[dict[str, dict[str, Any]], dict[tuple[str, str], tuple[Any, Callable[[Any], None]]]]:
    """Every variant that builds within the budget: (status per variant, rigs and steps)."""
    started = time.perf_counter()
    built: dict[tuple[str, str], tuple[Any, Callable[[Any], None]]] = {}
    variants: dict[str, dict[str, Any]] = {}
    for variant in STEP_VARIANTS:
        if variant == "cuda graph" and dev.type != "cuda":
            variants[variant] = {"status": "skipped: needs CUDA"}
            continue
        if time.perf_counter() - started > CAPTURE_BUDGET_S:
            variants[variant] = {"status": f"skipped: past the {CAPTURE_BUDGET_S} s budget"}
            continue
        t0 = time.perf_counter()
        try:
            for method, pair in _build_variant(variant, dev, teachers, setup).items():
                built[(variant, method)] = pair
            variants[variant] = {"status": "ok"}
        except Exception as err:  # one variant failing (a compile, a capture) is a result
            variants[variant] = {"status": "error", "error": f"{type(err).__name__}: {err}"[:600]}
        variants[variant]["build_s"] = round(time.perf_counter() - t0, 1)
    return variants, built


def _step_ratios(variants: dict[str, dict[str, Any]], ms: dict[tuple[str, str], float]) -> None:
    """Per variant: ms per step, pcd / kd, and the speed-up over the eager step."""
    eager = {m: ms.get(("eager", m)) for m in CAPTURE_METHODS}
    for variant, entry in variants.items():
        own = {m: ms[(variant, m)] for m in CAPTURE_METHODS if (variant, m) in ms}
        if len(own) != len(CAPTURE_METHODS):
            continue
        entry["ms_per_step"] = {m: round(v, 3) for m, v in own.items()}
        entry["pcd_over_kd"] = round(own["pcd S=3"] / own["kd"], 3)
        if all(eager.values()):
            entry["pcd_over_eager_kd"] = round(own["pcd S=3"] / eager["kd"], 3)  # type: ignore[operator]
            entry["speedup_over_eager"] = {m: round(eager[m] / v, 3) for m, v in own.items()}  # type: ignore[operator]


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


def capture_summary_lines(res: dict[str, Any]) -> list[str]:
    """gpu_check's log lines for ``step_capture``."""
    lines = []
    for variant, entry in res.get("variants", {}).items():
        if "ms_per_step" not in entry:
            lines.append(f"    {variant}: {entry['status']} {entry.get('error', '')}".rstrip())
            continue
        cells = "  ".join(f"{m} {v:.2f} ms" for m, v in entry["ms_per_step"].items())
        lines.append(
            f"    {variant}: {cells}  pcd/kd {entry['pcd_over_kd']}  speed-up over eager "
            f"{entry.get('speedup_over_eager')}  (built in {entry['build_s']} s)"
        )
    fastest, rehearsal = res.get("fastest_pcd"), res.get("rehearsal")
    lines.append(f"    fastest pcd step: {fastest} (rehearsal: {rehearsal})")
    return lines


def capture_headline(res: dict[str, Any]) -> dict[str, Any]:
    """The numbers to read first of ``step_capture``."""
    return {
        "fastest_pcd": res.get("fastest_pcd"),
        "pcd_over_kd": {v: e.get("pcd_over_kd") for v, e in res.get("variants", {}).items()},
        "pcd_over_eager_kd": {
            v: e.get("pcd_over_eager_kd") for v, e in res.get("variants", {}).items()
        },
    }


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
