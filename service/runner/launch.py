"""A study driver process: ``python -m service.runner.launch STUDY_DIR``.

Runs the study whose spec is in ``STUDY_DIR/spec.json`` (resuming it if the folder holds a
started one) and writes ``STUDY_DIR/outcome.json`` (succeeded or failed, with the reason, and
the attempt number that the supervisor gave it in ``STUDY_DIR/launch.json``), which the
service's supervisor reads: an outcome of another attempt is never applied. Settings come
from the ``PCD_*`` environment (``RunnerSettings.from_env``).

``python -m service.runner.launch --standby`` imports everything first (torch, Ray, Tune,
MLflow, Optuna: seconds) and then waits for one study folder on its standard input: the
supervisor keeps one such driver warm, so a submitted study starts without that wait. It
exits quietly when its input closes (the service stopped).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from service.settings import RunnerSettings

OUTCOME = "outcome.json"
LAUNCH = "launch.json"
_STARTED = time.monotonic()


def write_outcome(
    study_dir: Path, status: str, error: str | None = None, *, attempt: int | None = None
) -> None:
    tmp = study_dir / f".{OUTCOME}.tmp"
    tmp.write_text(json.dumps({"status": status, "error": error, "attempt": attempt}))
    os.replace(tmp, study_dir / OUTCOME)


def read_outcome(study_dir: Path, attempt: int) -> dict[str, Any] | None:
    """The outcome that attempt ``attempt`` wrote, or None (none yet, unreadable, or another
    attempt's: a previous driver's outcome must not finish a resumed study)."""
    try:
        result = json.loads((study_dir / OUTCOME).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(result, dict) or result.get("attempt") != attempt:
        return None
    return result


def write_launch(study_dir: Path, attempt: int) -> None:
    """Tell the next driver of this folder which attempt it is."""
    tmp = study_dir / f".{LAUNCH}.tmp"
    tmp.write_text(json.dumps({"attempt": attempt}))
    os.replace(tmp, study_dir / LAUNCH)


def read_attempt(study_dir: Path) -> int | None:
    try:
        attempt = json.loads((study_dir / LAUNCH).read_text()).get("attempt")
    except (OSError, ValueError, AttributeError):
        return None
    return attempt if isinstance(attempt, int) else None


def _timeline(event: str) -> None:
    """One line of the driver's timeline in driver.log (seconds since the study started)."""
    print(f"[pcd driver +{time.monotonic() - _STARTED:.1f}s] {event}", flush=True)


def main(study_dir: Path, *, warm: bool = False) -> int:
    from search_spaces import parse_spec
    from service.runner.errors import one_line
    from service.runner.study import run_study

    def on_term(signum, frame):  # a cancel: leave no outcome, the service records it
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, on_term)
    attempt = read_attempt(study_dir)  # read once: a later launch may rewrite the file
    kind = "warm driver (Ray connected, workers started)" if warm else "driver"
    _timeline(f"study {study_dir.name}: {kind} ready, pid {os.getpid()}")
    spec = parse_spec(json.loads((study_dir / "spec.json").read_text()), source="spec.json")
    settings = RunnerSettings.from_env()
    try:
        run_study(spec, study_dir, settings, on_phase=_timeline)
    except SystemExit:
        raise
    except Exception as err:  # any failure is recorded with its reason (the traceback: log)
        traceback.print_exc()
        write_outcome(study_dir, "failed", one_line(err), attempt=attempt)
        _timeline(f"failed: {one_line(err)}")
        return 1
    write_outcome(study_dir, "succeeded", attempt=attempt)
    _timeline("succeeded")
    return 0


def standby() -> int:
    """Import the heavy stack, connect to Ray and start trial workers, then run the one
    study folder named on standard input."""
    global _STARTED
    from service.runner.study import warm_up  # torch, Ray, Tune, MLflow, Optuna

    warm_up(RunnerSettings.from_env())
    line = sys.stdin.readline().strip()
    if not line:
        return 0  # the service went away before handing over a study
    study_dir = Path(line)
    _STARTED = time.monotonic()
    # from here on this process is that study's driver: its output goes to the study's log
    log = os.open(study_dir / "driver.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    return main(study_dir, warm=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["--standby"]:
        sys.exit(standby())
    sys.exit(main(Path(sys.argv[1])))
