"""deploy/rehearse.sh: the compose topology as processes (Postgres, MLflow with proxied
artifacts, a two-node Ray cluster with token auth, the API submitting Ray Jobs), the digits
study through it, and everything it started stopped afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest
from pcd_testing.processes import alive

pytestmark = pytest.mark.heavy  # the whole topology as processes: make test-heavy

ROOT = Path(__file__).resolve().parents[2]


def _started_by(work: Path, p: psutil.Process) -> bool:
    """p or one of its ancestors names the rehearsal's folder (raylet does, via --temp-dir)."""
    for proc in [p, *p.parents()]:
        if any(str(work) in part for part in proc.cmdline()):
            return True
    return False


class RayWatch(threading.Thread):
    """While the rehearsal runs, notes every Ray process it started, renamed ones
    (ray::DashboardAgent) included: those must all be gone at the end. Ray of other tests
    or of containers on the same machine is not counted."""

    def __init__(self, work: Path) -> None:
        super().__init__(daemon=True)
        self.work, self.done = work, threading.Event()
        self.seen: set[psutil.Process] = set()

    def run(self) -> None:
        while not self.done.wait(0.5):
            for p in psutil.process_iter(["cmdline"]):
                try:
                    if p.info["cmdline"] and p.info["cmdline"][0].startswith("ray::"):
                        if _started_by(self.work, p):
                            self.seen.add(p)
                except psutil.Error:
                    continue

    def alive(self) -> list[psutil.Process]:
        self.done.set()
        self.join()
        return [p for p in self.seen if alive(p)]  # zombies are not left running


def _rehearse(env: dict[str, str], timeout: float = 900) -> tuple[int, str]:
    """Run deploy/rehearse.sh; past the timeout its process group gets SIGTERM, so that its
    trap stops what it started (a SIGKILL would leave its Ray cluster running)."""
    proc = subprocess.Popen(
        ["bash", str(ROOT / "deploy" / "rehearse.sh"), "pcd-digits"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:  # the whole group: bash runs its trap once its child ends
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
        out += f"\n[test] rehearse.sh stopped after {timeout:.0f} s"
    return proc.returncode, out


def test_rehearsal_runs_the_digits_study_through_the_cluster_topology(tmp_path):
    work = Path(f"/tmp/pcd-rh-{os.getpid()}")  # short: Ray's socket paths are limited
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PCD_", "RAY_"))},
        "VENV": str(Path(sys.executable).parent.parent),
        "REHEARSAL_DIR": str(work),
    }
    watch = RayWatch(work)
    watch.start()
    returncode, out = _rehearse(env)
    assert returncode == 0, out[-4000:]
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
    assert watch.seen, "the watch saw none of the rehearsal's Ray agents"
    assert not watch.alive()  # Ray's renamed agents too
    assert not work.exists()
