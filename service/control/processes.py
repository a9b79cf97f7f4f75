"""Processes the service starts (study drivers; for `make demo` and the benches also MLflow
and the API): each in a session of its own, so that it outlives a restart of its starter and
is stopped as a group, by its PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

import httpx


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` just now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def start_session(
    args: list[str], env: dict[str, str], log: Path, *, stdin: int = subprocess.DEVNULL
) -> subprocess.Popen:
    """``args`` in a new session, its output appended to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            args, stdin=stdin, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> bool:
    """Whether ``url`` answers 200 within ``timeout`` seconds (False at once if ``proc``,
    the server, exits meanwhile)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    return False


def terminate_group(pid: int, alive: Callable[[], bool], timeout: float) -> None:
    """SIGTERM to the process group that ``pid`` leads; SIGKILL if ``alive()`` still says so
    after ``timeout`` seconds."""
    try:
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        if alive():
            os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:  # gone already
        pass


def stop_session(proc: subprocess.Popen | None, timeout: float = 30.0) -> None:
    """Stop a process started by ``start_session`` (and its group), and reap it."""
    if proc is None or proc.poll() is not None:
        return
    terminate_group(proc.pid, lambda: proc.poll() is None, timeout)
    with suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
