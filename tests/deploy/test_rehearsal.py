"""deploy/rehearse.sh: the compose topology as processes (Postgres, MLflow with proxied
artifacts, a two-node Ray cluster with token auth, the API submitting Ray Jobs), the digits
study through it, and everything it started stopped afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]


def _ours(pid: int) -> bool:
    """In this PID namespace: Ray processes inside containers are not the rehearsal's."""
    try:
        return os.readlink(f"/proc/{pid}/ns/pid") == os.readlink("/proc/self/ns/pid")
    except OSError:
        return False


def _ray_agents() -> set[int]:
    pids = set()
    for p in psutil.process_iter(["cmdline"]):
        try:
            if _ours(p.pid) and any(part.startswith("ray::") for part in (p.info["cmdline"] or [])):
                pids.add(p.pid)
        except psutil.NoSuchProcess:
            continue
    return pids


def test_rehearsal_runs_the_digits_study_through_the_cluster_topology(tmp_path):
    work = Path(f"/tmp/pcd-rh-{os.getpid()}")  # short: Ray's socket paths are limited
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PCD_", "RAY_"))},
        "VENV": str(Path(sys.executable).parent.parent),
        "REHEARSAL_DIR": str(work),
    }
    agents_before = _ray_agents()
    done = subprocess.run(
        ["bash", str(ROOT / "deploy" / "rehearse.sh"), "pcd-digits"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "succeeded as Ray Job" in out
    assert "readyz: 200" in out
    # nothing it started is left running, and its folder is gone
    left = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(str(work) in part for part in (p.info["cmdline"] or [])):
                left.append(p.info["cmdline"])
        except psutil.NoSuchProcess:
            continue
    assert not left, left
    assert _ray_agents() <= agents_before  # Ray's renamed agents too
    assert not work.exists()
