"""The fused PCD kernel compiles for the GPU (sm_90, to a cubin), without a GPU.

Triton's interpreter runs the kernel's Python but not Triton's compiler, which rejects things
the interpreter accepts (a non-constexpr global, a type that changes in a loop). Compiling
needs no device: Triton's wheel carries ptxas. It runs in a subprocess because the interpreter
tests set TRITON_INTERPRET=1 for this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")

ROOT = Path(__file__).resolve().parents[2]

COMPILE = r"""
import json, sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from pcd_core.losses import _fused_pcd_kernels as kernels

ARGS = {"s_ptr": "*bf16", "t_ptr": "*bf16", "s_row_stride": "i32", "t_row_stride": "i32",
        "table_ptr": "*i32", "coef_ptr": "*fp32", "num_stages": "i32", "num_classes": "i32",
        "inv_temperature": "fp32", "out_scale": "fp32", "row_loss_ptr": "*fp32",
        "grad_ptr": "*fp32"}
out = []
for constants, warps in json.loads(sys.argv[1]):
    signature = {**ARGS, **{name: "constexpr" for name in constants}}
    names = list(signature)
    source = ASTSource(
        fn=kernels.fused_pcd_kernel,
        signature=signature,
        constexprs={(names.index(k),): v for k, v in constants.items()},
    )
    target = GPUTarget("cuda", 90, 32)
    compiled = triton.compile(source, target=target, options={"num_warps": warps})
    out.append(sorted(compiled.asm))
print(json.dumps(out))
"""


def test_the_kernel_compiles_to_a_cubin_for_sm90() -> None:
    variants = [
        # the heaviest: C=1000, S=3 (4 groups), sort, standardise, released weight with grad
        (dict(RANKING=1, WEIGHTING=2, STANDARDIZE=True, WEIGHT_GRAD=True, WRITE_GRAD=True,
              C_BLOCK=1024, G_BLOCK=4), 8),
        # the lightest: class order, no weight, no gradient written
        (dict(RANKING=0, WEIGHTING=0, STANDARDIZE=False, WEIGHT_GRAD=False, WRITE_GRAD=False,
              C_BLOCK=16, G_BLOCK=2), 4),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, "-c", COMPILE, json.dumps(variants)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert all("cubin" in stages for stages in json.loads(proc.stdout.splitlines()[-1]))
