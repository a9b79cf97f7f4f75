"""bench/gpu_check.py runs end to end on the CPU (--quick), so the one GPU run works first time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECKS = (
    "loss_correctness",
    "bf16_autocast",
    "fused_loss",
    "no_host_sync",
    "train_e2e",
    "train_throughput",
    "loss_bench",
    "step_capture",
)
CUDA_ONLY = {"no_host_sync"}


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("gpu_check") / "gpu_check.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--quick", "--device", "cpu",
         "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "=== summary ===" in proc.stdout
    return json.loads(out.read_text())


@pytest.mark.heavy  # the whole GPU check rehearsed on CPU (make test-heavy)
def test_every_check_ran_and_passed_or_is_skipped_for_lack_of_cuda(report) -> None:
    assert report["format"] == "pcd-gpu-check/1"
    assert set(report["checks"]) == set(CHECKS)
    for name in CHECKS:
        status = report["checks"][name]["status"]
        expected = "skipped: no CUDA" if name in CUDA_ONLY else "ok"
        assert status == expected, (name, report["checks"][name])
    assert report["summary"] == {k: v["status"] for k, v in report["checks"].items()}
    assert report["environment"]["device"] == "cpu"


@pytest.mark.heavy  # the whole GPU check rehearsed on CPU (make test-heavy)
def test_correctness_covers_the_options_and_is_tight(report) -> None:
    res = report["checks"]["loss_correctness"]
    labels = " ".join(r["case"] for r in res["cases"])
    for word in ("pcd_loss", "kd_loss", "dkd_loss", "released", "phased", "standardize",
                 "geometric", "method pcd"):  # fmt: skip
        assert word in labels
    assert {r["dtype"] for r in res["cases"]} == {"float64", "float32"}
    assert res["worst_rel_err"]["float64"]["grad"] < 1e-10
    assert all(r["ok"] for r in res["cases"])
    bf16 = report["checks"]["bf16_autocast"]["cases"]
    assert all(r["logits_dtype"] == "torch.bfloat16" and r["loss_dtype"] == "torch.float32"
               for r in bf16)  # fmt: skip


@pytest.mark.heavy  # the whole GPU check rehearsed on CPU (make test-heavy)
def test_fused_check_rehearsed_the_kernel_in_the_interpreter(report) -> None:
    res = report["checks"]["fused_loss"]
    assert res["interpreter"] is True
    assert res["agreement"]["worst_fp32"]["grad"] < 1e-5
    assert {"kd_loss", "pcd S=3 fused", "pcd S=3 vectorised"} <= set(res["speed"]["rows"][0]["ms"])
    assert set(res["train_step"]["ratio_to_kd"]) == {"kd", "pcd S=3 fused", "pcd S=3 vectorised"}


@pytest.mark.heavy  # the whole GPU check rehearsed on CPU (make test-heavy)
def test_step_capture_rehearsed_its_variants(report) -> None:
    res = report["checks"]["step_capture"]
    assert res["rehearsal"] is True and res["compile_backend"] == "eager"
    variants = res["variants"]
    assert variants["cuda graph"]["status"] == "skipped: needs CUDA"
    for name in ("eager", "compiled models", "compiled model+loss"):
        assert variants[name]["status"] == "ok", variants[name]
        assert set(variants[name]["ms_per_step"]) == {"kd", "pcd S=3"}
        assert variants[name]["pcd_over_kd"] > 0
    assert res["fastest_pcd"] in variants


@pytest.mark.heavy  # the whole GPU check rehearsed on CPU (make test-heavy)
def test_sync_check_exercised_its_code_without_claiming_a_pass(report) -> None:
    res = report["checks"]["no_host_sync"]
    assert "needs CUDA" in res["note"]
    assert set(res["steps"]) >= {"ce", "kd", "dkd", "pcd S=3", "pcd S=3 + logit bank"}
    assert all("not run" in e["error_mode"] for e in res["steps"].values())
    assert set(res["train_epoch_warn_mode"]) == {"kd", "pcd S=3 + logit bank"}


@pytest.mark.heavy  # the whole GPU check rehearsed on CPU (make test-heavy)
def test_e2e_throughput_and_bench_report_numbers(report) -> None:
    e2e = report["checks"]["train_e2e"]["runs"]
    assert set(e2e) == {"teacher ce", "student pcd S=3", "student kd + logit bank"}
    assert len(e2e["student pcd S=3"]["history"]) == 2
    assert e2e["student kd + logit bank"]["bank_files"]
    assert e2e["student pcd S=3"]["student_model"]["devices"] == ["cpu"]
    tab = report["checks"]["train_throughput"]["batches"]["batch 8"]
    assert {"ce", "kd", "dkd", "pcd S=3", "kd + logit bank"} <= set(tab["methods"])
    assert tab["methods"]["pcd S=3"]["images_per_s"] > 0
    assert "PROJECTION" in report["checks"]["train_throughput"]["projection_note"]
    row = report["checks"]["loss_bench"]["rows"][0]
    assert {"kd_loss", "pcd joint S=3", "pcd joint S=5", "naive S=5"} <= set(row["ms"])


def test_sync_sites_groups_warnings_by_line() -> None:
    """The parser of sync-debug warnings (only exercised for real on CUDA)."""
    import importlib.util
    import warnings

    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench" / "gpu_check.py")
    assert spec is not None and spec.loader is not None
    gc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gc)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        for _ in range(3):
            warnings.warn("called a synchronizing CUDA operation", stacklevel=1)
        warnings.warn("something else", stacklevel=1)
    sites = gc._sync_sites(rec)
    assert len(sites) == 1
    assert sites[0]["count"] == 3
    assert sites[0]["file"] == "tests/bench/test_gpu_check.py"
    assert "synchronizing" in sites[0]["source"]


def test_the_sync_check_runs_the_trainers_own_step(monkeypatch) -> None:
    """The GPU check's step and epoch are pcd_core.train.step's, not a copy of them."""
    import importlib.util

    import torch

    from pcd_core.models import build_model
    from pcd_core.train import step as step_mod

    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench" / "gpu_check.py")
    assert spec is not None and spec.loader is not None
    gc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gc)
    assert gc.train_step is step_mod.train_step and gc.train_epoch is step_mod.train_epoch
    calls: list[int] = []
    monkeypatch.setattr(
        gc, "train_step", lambda *a, **kw: calls.append(1) or step_mod.train_step(*a, **kw)
    )
    cpu = torch.device("cpu")
    teacher = build_model("resnet8", 100)
    rig = gc._Rig(cpu, teacher, "resnet8", "kd", {}, 4, 8, True, amp=False)
    rig.step(rig.next_batch())
    assert calls == [1] and rig.tally.seen == 4
