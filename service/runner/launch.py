"""A study driver process: ``python -m service.runner.launch STUDY_DIR``.

Runs the study whose spec is in the study folder (resuming it if the folder holds a started
one) and writes the attempt's outcome there (succeeded or failed, with the reason, and the
attempt number that the supervisor gave it), which the service's supervisor reads: an outcome
of another attempt is never applied (the files: ``service.study_files``). Settings come from
the ``PCD_*`` environment (``RunnerSettings.from_env``).

``python -m service.runner.launch --standby`` imports everything first (torch, Ray, Tune,
MLflow, Optuna: seconds) and then waits for one study folder on its standard input: the
supervisor keeps one such driver warm, so a submitted study starts without that wait. It
exits quietly when its input closes (the service stopped).
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from pathlib import Path

from service.settings import RunnerSettings
from service.study_files import Outcome, StudyFolder

_STARTED = time.monotonic()


def _timeline(event: str) -> None:
    """One line of the driver's timeline in its log (seconds since the study started)."""
    print(f"[pcd driver +{time.monotonic() - _STARTED:.1f}s] {event}", flush=True)


def main(study_dir: Path, *, warm: bool = False) -> int:
    from service.runner.errors import one_line
    from service.runner.study import run_study

    def on_term(signum, frame):  # a cancel: leave no outcome, the service records it
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, on_term)
    folder = StudyFolder(study_dir)
    attempt = folder.read_attempt()  # read once: a later launch may rewrite the file
    kind = "warm driver (Ray connected, workers started)" if warm else "driver"
    _timeline(f"study {study_dir.name}: {kind} ready, pid {os.getpid()}")
    spec = folder.read_spec()
    settings = RunnerSettings.from_env()
    try:
        run_study(spec, study_dir, settings, on_phase=_timeline)
    except SystemExit:
        raise
    except Exception as err:  # any failure is recorded with its reason (the traceback: log)
        traceback.print_exc()
        folder.write_outcome(Outcome(status="failed", error=one_line(err), attempt=attempt))
        _timeline(f"failed: {one_line(err)}")
        return 1
    folder.write_outcome(Outcome(status="succeeded", attempt=attempt))
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
    log = os.open(StudyFolder(study_dir).driver_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
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
