"""The fused PCD loss: ``pcd_loss`` in one Triton kernel launch, for the GPU.

``pcd_loss`` calls :func:`fused_pcd_loss` on CUDA when :func:`unsupported_reason` finds
nothing against it (``PCD_FUSED=0`` turns that off); otherwise it keeps its vectorised path
and logs the reason once at debug level. Every option of ``pcd_loss`` is served.

Per call on the GPU: one kernel (ranking sort, every stage's groups, the loss of each row and
its analytic gradient), one sum over the rows; the backward is one multiplication (plus a
cast for half-precision logits). The computation is fp32 whatever the logits' dtype.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

logger = logging.getLogger(__name__)

# Largest [group, position] block one program holds (registers): C=1000 serves k <= 16.
MAX_BLOCK_ELEMENTS = 16384


@dataclass(frozen=True)
class FusedPlan:
    """Where every group of every distinct stage lies in the ranked positions."""

    table: Tensor  # int32 [stages, 2, G_BLOCK]: first and past-the-last position per group
    coef: Tensor  # fp32 [stages, G_BLOCK]: multiplicity (/ count if stage_norm); 0 if 1 class
    num_stages: int
    class_block: int
    group_block: int


def _next_pow2(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


def _blocks(num_classes: int, group_counts: Sequence[int]) -> tuple[int, int]:
    return max(_next_pow2(num_classes), 16), max(_next_pow2(max(group_counts)), 2)


@lru_cache(maxsize=256)
def fused_plan(
    group_counts: tuple[int, ...],
    num_classes: int,
    split: str,
    split_ratio: float,
    stage_norm: bool,
    device: torch.device,
) -> FusedPlan:
    """Build (once per configuration and device) the group table of the distinct stages."""
    from pcd_core.losses.pcd import group_sizes  # pcd.py imports this module

    class_block, group_block = _blocks(num_classes, group_counts)
    multiplicity = Counter(group_counts)
    norm = float(len(group_counts)) if stage_norm else 1.0
    table = torch.zeros((len(multiplicity), 2, group_block), dtype=torch.int32)
    coef = torch.zeros((len(multiplicity), group_block), dtype=torch.float32)
    for stage, k in enumerate(sorted(multiplicity)):
        start = 0
        for group, size in enumerate(group_sizes(num_classes, k, split, split_ratio)):  # type: ignore[arg-type]
            table[stage, :, group] = torch.tensor([start, start + size])
            coef[stage, group] = multiplicity[k] / norm if size > 1 else 0.0
            start += size
    return FusedPlan(
        table=table.to(device),
        coef=coef.to(device),
        num_stages=len(multiplicity),
        class_block=class_block,
        group_block=group_block,
    )


# Device types that pcd_loss sends to the kernel (the tests add "cpu" under the interpreter).
FUSED_DEVICE_TYPES: frozenset[str] = frozenset({"cuda"})


def serves(student_logits: Tensor, teacher_logits: Tensor, group_counts: Sequence[int]) -> bool:
    """Whether ``pcd_loss`` takes the fused path for this call: on CUDA unless ``PCD_FUSED=0``
    or :func:`unsupported_reason` objects (then the reason is debug-logged once)."""
    if student_logits.device.type not in FUSED_DEVICE_TYPES:
        return False
    if os.environ.get("PCD_FUSED", "1") == "0":
        return False
    reason = unsupported_reason(student_logits, teacher_logits, group_counts)
    if reason is not None:
        log_fallback_once(reason)
        return False
    return True


@contextmanager
def vectorised_path() -> Iterator[None]:
    """``PCD_FUSED=0`` inside the block (process-wide): for benchmarks and A/B checks."""
    previous = os.environ.get("PCD_FUSED")
    os.environ["PCD_FUSED"] = "0"
    try:
        yield
    finally:
        if previous is None:
            del os.environ["PCD_FUSED"]
        else:
            os.environ["PCD_FUSED"] = previous


def unsupported_reason(
    student_logits: Tensor, teacher_logits: Tensor, group_counts: Sequence[int]
) -> str | None:
    """Why the fused kernel cannot serve this call (None: it can). No host sync."""
    if torch.float64 in (student_logits.dtype, teacher_logits.dtype):
        return "float64 logits (the fused kernel computes in fp32)"
    if student_logits.device != teacher_logits.device:
        return "student and teacher logits on different devices"
    num_classes = student_logits.shape[1]
    if num_classes < 2:
        return "a single class (no group to distil)"
    class_block, group_block = _blocks(num_classes, group_counts)
    if class_block * group_block > MAX_BLOCK_ELEMENTS:
        return (
            f"C={num_classes} with up to k={max(group_counts)} groups exceeds the kernel's "
            f"{MAX_BLOCK_ELEMENTS}-element [group, class] block"
        )
    if torch.compiler.is_compiling():
        return "traced by torch.compile (it compiles the vectorised path)"
    return _triton_missing()


@lru_cache(maxsize=1)
def _triton_missing() -> str | None:
    try:
        from pcd_core.losses import _fused_pcd_kernels  # noqa: F401
    except ImportError as err:  # CPU-only installs have no triton
        return f"triton is not importable ({err})"
    return None


_logged_reasons: set[str] = set()


def log_fallback_once(reason: str) -> None:
    """Debug-log why a CUDA call took the vectorised path, once per distinct reason."""
    if reason not in _logged_reasons:
        _logged_reasons.add(reason)
        logger.debug("pcd_loss: vectorised path, not the fused kernel: %s", reason)


def fused_pcd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    *,
    temperature: float,
    group_counts: Sequence[int],
    ranking: str = "abs_gap",
    split: str = "even",
    weighting: str = "paper",
    standardize: bool = False,
    detach_weight: bool = False,
    stage_norm: bool = False,
    split_ratio: float = 2.0,
) -> Tensor:
    """``pcd_loss`` with the same arguments, computed by the fused kernel (fp32 result).

    The options are those of ``pcd_loss``, which validates them before calling this; call it
    directly only where :func:`unsupported_reason` is None (any device under the Triton
    interpreter, CUDA otherwise). The teacher is a constant, as in ``pcd_loss``.
    """
    counts = tuple(int(k) for k in group_counts)
    plan = fused_plan(
        counts,
        student_logits.shape[1],
        split,
        float(split_ratio),
        bool(stage_norm),
        student_logits.device,
    )
    options = _KernelOptions(
        temperature=float(temperature),
        ranking=ranking,
        weighting=weighting,
        standardize=bool(standardize),
        weight_grad=weighting != "none" and not detach_weight,
    )
    return _FusedPCD.apply(student_logits, teacher_logits.detach(), plan, options)


@dataclass(frozen=True)
class _KernelOptions:
    temperature: float
    ranking: str
    weighting: str
    standardize: bool
    weight_grad: bool


def _launch(
    student: Tensor, teacher: Tensor, plan: FusedPlan, opts: _KernelOptions, write_grad: bool
) -> tuple[Tensor, Tensor | None]:
    """Run the kernel: per-row losses (already T^2 / B scaled) and the gradient, if asked."""
    from pcd_core.losses import _fused_pcd_kernels as kernels

    if student.stride(1) != 1:
        student = student.contiguous()
    if teacher.stride(1) != 1:
        teacher = teacher.contiguous()
    batch, num_classes = student.shape
    row_loss = torch.empty(batch, dtype=torch.float32, device=student.device)
    grad = (
        torch.empty((batch, num_classes), dtype=torch.float32, device=student.device)
        if write_grad
        else row_loss  # not written
    )
    # Triton launches on the current CUDA device: make it the logits' one
    device_scope = torch.cuda.device(student.device) if student.is_cuda else nullcontext()
    with device_scope:
        _run_kernel(kernels, student, teacher, plan, opts, row_loss, grad, write_grad)
    return row_loss, (grad if write_grad else None)


def _run_kernel(
    kernels: ModuleType,
    student: Tensor,
    teacher: Tensor,
    plan: FusedPlan,
    opts: _KernelOptions,
    row_loss: Tensor,
    grad: Tensor,
    write_grad: bool,
) -> None:
    batch, num_classes = student.shape
    kernels.fused_pcd_kernel[(batch,)](
        student,
        teacher,
        student.stride(0),
        teacher.stride(0),
        plan.table,
        plan.coef,
        plan.num_stages,
        num_classes,
        1.0 / opts.temperature,
        opts.temperature**2 / batch,
        row_loss,
        grad,
        RANKING=kernels.RANKING_CODES[opts.ranking],
        WEIGHTING=kernels.WEIGHTING_CODES[opts.weighting],
        STANDARDIZE=opts.standardize,
        WEIGHT_GRAD=opts.weight_grad,
        WRITE_GRAD=write_grad,
        C_BLOCK=plan.class_block,
        G_BLOCK=plan.group_block,
        num_warps=_num_warps(plan.class_block * plan.group_block),
    )


def _num_warps(block_elements: int) -> int:
    """Enough threads that the [group, class] tensors stay in registers."""
    return 4 if block_elements <= 2048 else (8 if block_elements <= 8192 else 16)


class _FusedPCD(torch.autograd.Function):
    """The forward writes the gradient of the loss; the backward scales it."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, student: Tensor, teacher: Tensor, plan: FusedPlan, opts: _KernelOptions
    ) -> Tensor:
        write_grad = bool(ctx.needs_input_grad[0])
        row_loss, grad = _launch(student, teacher, plan, opts, write_grad)
        ctx.student_dtype = student.dtype
        ctx.save_for_backward(grad)
        return row_loss.sum()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor):  # type: ignore[override]
        (grad,) = ctx.saved_tensors
        return (grad * grad_out).to(ctx.student_dtype), None, None, None
