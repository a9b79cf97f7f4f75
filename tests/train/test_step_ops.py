"""The PCD training step waits for nothing and launches the same operators whatever S.

Checked on the trainer's own ``train_step`` on the CPU: every aten operator of one step is
recorded (a ``TorchDispatchMode``) with the Python-level reads of tensor values (a
``TorchFunctionMode``: ``.item()``, ``bool()``, ``.tolist()``, ...). On a GPU each operator is
a kernel launch and each read a host sync, so the counts here are the step's launches there.
The fused kernel runs in Triton's interpreter (``TRITON_INTERPRET=1``, set before triton is
imported) and counts as one launch: the interpreter's own tensor handling is not recorded.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

os.environ["TRITON_INTERPRET"] = "1"  # read when triton is imported (see test_fused_pcd.py)

from pcd_core import methods
from pcd_core.data import Batch
from pcd_core.losses import fused_pcd, pcd_loss
from pcd_core.methods import build_method
from pcd_core.models import build_model
from pcd_core.train import Distiller, EpochTally, train_step

NUM_CLASSES, BATCH, IMAGE = 10, 4, 8
TOTAL_EPOCHS = 10
# epoch 2 of 10: inside the warm-up ramp; phased S=5 is then in its second phase (k=4)
EPOCH = 2
FUSED_KERNEL = "triton.fused_pcd_kernel"

# aten operators that read a value on the host (on CUDA: a sync) or whose output size
# depends on the data (a sync to size it)
SYNC_OPS = frozenset(
    {
        "_local_scalar_dense",
        "item",
        "is_nonzero",
        "equal",
        "allclose",
        "nonzero",
        "masked_select",
        "_unique",
        "_unique2",
        "unique_dim",
        "unique_consecutive",
    }
)
# aten operators that make a tensor of Python values (torch.tensor(...): a host-to-device copy)
FROM_HOST_OPS = frozenset({"lift_fresh", "lift_fresh_copy"})
# Tensor methods that hand a value to Python (each a device-to-host copy and a sync on CUDA)
HOST_READS = frozenset(
    {"item", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__", "cpu"}
)


class _StepOps(TorchDispatchMode):
    """The aten operators dispatched inside the block, by name (``aten.add_.Tensor``)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()
        self.paused = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        if not self.paused:
            self.ops[str(func)] += 1
        return func(*args, **(kwargs or {}))


class _HostReads(TorchFunctionMode):
    """The Tensor methods of :data:`HOST_READS` called inside the block."""

    def __init__(self, step_ops: _StepOps) -> None:
        super().__init__()
        self.step_ops = step_ops
        self.reads: Counter[str] = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        name = getattr(func, "__name__", "")
        if name in HOST_READS and not self.step_ops.paused:
            self.reads[name] += 1
        return func(*args, **(kwargs or {}))


def _opaque_kernel(step_ops: _StepOps, launch: Callable[..., Any]) -> Callable[..., Any]:
    """``launch`` (the fused kernel) counted as one operator, its insides not recorded."""

    def counted(*args: Any, **kwargs: Any) -> Any:
        step_ops.ops[FUSED_KERNEL] += 1
        step_ops.paused = True
        try:
            return launch(*args, **kwargs)
        finally:
            step_ops.paused = False

    return counted


class _Rig:
    """cnn_small -> cnn_small on 8x8 random images, the trainer's SGD."""

    def __init__(self, options: dict[str, Any]) -> None:
        torch.manual_seed(0)
        make = lambda: build_model("cnn_small", NUM_CLASSES, 1, IMAGE)  # noqa: E731
        self.distiller = Distiller(make(), make(), build_method("pcd", options)).train()
        self.optimizer = torch.optim.SGD(
            self.distiller.student.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4
        )
        self.tally = EpochTally(torch.device("cpu"))
        gen = torch.Generator().manual_seed(1)
        self.batch = Batch(
            images=torch.randn(BATCH, 1, IMAGE, IMAGE, generator=gen),
            labels=torch.randint(0, NUM_CLASSES, (BATCH,), generator=gen),
            index=torch.arange(BATCH),
            step=0,
        )

    def step(self) -> None:
        train_step(
            self.distiller,
            self.optimizer,
            self.batch,
            self.tally,
            epoch=EPOCH,
            total_epochs=TOTAL_EPOCHS,
            amp=False,
        )


@contextmanager
def _recording(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[_StepOps, _HostReads]]:
    step_ops = _StepOps()
    host_reads = _HostReads(step_ops)
    with monkeypatch.context() as m:
        m.setattr(fused_pcd, "_run_kernel", _opaque_kernel(step_ops, fused_pcd._run_kernel))
        with step_ops, host_reads:
            yield step_ops, host_reads


def _recorded_step(
    options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> tuple[Counter[str], Counter[str]]:
    """(aten operators, host reads) of the second step of a fresh rig: the first one builds
    the cached stage layouts and the optimizer's momentum buffers."""
    rig = _Rig(options)
    rig.step()
    with _recording(monkeypatch) as (step_ops, host_reads):
        rig.step()
    return step_ops.ops, host_reads.reads


def _syncs(ops: Counter[str], reads: Counter[str]) -> dict[str, int]:
    """Every operator or read of the step that a GPU would wait for or copy from the host."""
    bad = {op: n for op, n in ops.items() if op.split(".")[1] in SYNC_OPS | FROM_HOST_OPS}
    return {**bad, **reads}


SCHEDULES = {
    "joint S=1": {"stages": 1},
    "joint S=5": {"stages": 5},
    "phased S=5": {"stages": 5, "schedule": "phased"},
    "phased S=1": {"stages": 1, "schedule": "phased"},
}


@pytest.fixture
def fused_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """pcd_loss takes the fused path on CPU tensors (the kernel in Triton's interpreter)."""
    pytest.importorskip("triton")
    from triton.runtime.interpreter import InterpretedFunction

    from pcd_core.losses import _fused_pcd_kernels as kernels

    if not isinstance(kernels.fused_pcd_kernel, InterpretedFunction):  # pragma: no cover
        pytest.skip("triton was imported before TRITON_INTERPRET=1; run this file on its own")
    monkeypatch.setattr(fused_pcd, "FUSED_DEVICE_TYPES", frozenset({"cuda", "cpu"}))
    monkeypatch.delenv("PCD_FUSED", raising=False)


def _assert_same_ops_for_every_schedule(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    recorded = {label: _recorded_step(o, monkeypatch) for label, o in SCHEDULES.items()}
    for label, (ops, reads) in recorded.items():
        assert not _syncs(ops, reads), f"{label}: the step syncs: {_syncs(ops, reads)}"
    first_label, (first, _) = next(iter(recorded.items()))
    for label, (ops, _) in recorded.items():
        differ = {op: (first[op], ops[op]) for op in first | ops if first[op] != ops[op]}
        assert not differ, f"{first_label} vs {label}: operator counts differ: {differ}"
    return first


def test_the_fused_step_launches_the_same_operators_whatever_the_stages(
    fused_on_cpu: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    ops = _assert_same_ops_for_every_schedule(monkeypatch)
    assert ops[FUSED_KERNEL] == 1  # the loss took the fused path, one launch per step


def test_the_vectorised_step_launches_the_same_operators_whatever_the_stages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PCD_FUSED", "0")
    ops = _assert_same_ops_for_every_schedule(monkeypatch)
    assert ops[FUSED_KERNEL] == 0 and ops["aten.sort.stable"] == 1


def _per_stage_pcd_loss(student_logits, teacher_logits, *, group_counts, **kwargs):
    """pcd_loss called once per stage: what a step that loops over the stages launches."""
    terms = [pcd_loss(student_logits, teacher_logits, group_counts=[k], **kwargs)
             for k in group_counts]  # fmt: skip
    return torch.stack(terms).sum()


def _value_reading_pcd_loss(*args: Any, **kwargs: Any) -> torch.Tensor:
    """pcd_loss with a branch on its value: a host sync."""
    term = pcd_loss(*args, **kwargs)
    return term if float(term.detach()) >= 0 else -term


@pytest.mark.parametrize(
    ("loss", "complaint"),
    [(_per_stage_pcd_loss, "operator counts differ"), (_value_reading_pcd_loss, "the step syncs")],
)
def test_the_checks_catch_a_per_stage_loop_and_a_sync(
    loss: Callable[..., torch.Tensor], complaint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checks above can fail: the same check on a step whose loss loops over the stages,
    or reads its value, fails."""
    monkeypatch.setenv("PCD_FUSED", "0")
    monkeypatch.setattr(methods, "pcd_loss", loss)
    with pytest.raises(AssertionError, match=complaint):
        _assert_same_ops_for_every_schedule(monkeypatch)
