"""Processes a test starts: found by PID (and their descendants), stopped by PID, and the
ones left behind reported."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import psutil

# the service's own helpers, for tests too
from service.control.processes import free_port as free_port
from service.control.processes import wait_http as wait_http

VENV_BIN = Path(sys.executable).parent


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.5):
    """The predicate's first truthy value within ``timeout`` seconds, else None."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def tree(pids: Iterable[int]) -> list[psutil.Process]:
    """The processes ``pids`` and all their descendants (those still there)."""
    out: dict[int, psutil.Process] = {}
    for pid in pids:
        try:
            p = psutil.Process(pid)
            out[p.pid] = p
            for c in p.children(recursive=True):
                out[c.pid] = c
        except psutil.NoSuchProcess:
            continue
    return list(out.values())


def matching(*markers: str) -> list[psutil.Process]:
    """Live processes with any of ``markers`` in their command line (not this one); each
    carries the command line it was matched on in ``p.info["cmdline"]``."""
    procs = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if p.pid != os.getpid() and any(m in cmd for m in markers) and alive(p):
            procs.append(p)
    return procs


def stop(procs: Iterable[psutil.Process], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL what is left after ``timeout`` seconds; each by its PID."""
    procs = [p for p in procs if alive(p)]
    for p in procs:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, left = psutil.wait_procs(procs, timeout=timeout)
    for p in left:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(left, timeout=5)


def kill9(pid: int) -> None:
    """kill -9 of one process (not its group, not its children)."""
    os.kill(pid, signal.SIGKILL)
