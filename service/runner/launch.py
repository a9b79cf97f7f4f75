"""A study driver process: ``python -m service.runner.launch STUDY_DIR``.

Runs the study whose spec is in ``STUDY_DIR/spec.json`` (resuming it if the folder holds a
started one) and writes ``STUDY_DIR/outcome.json`` (succeeded or failed, with the reason),
which the service's supervisor reads. Settings come from the ``PCD_*`` environment.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from pathlib import Path

OUTCOME = "outcome.json"


def write_outcome(study_dir: Path, status: str, error: str | None = None) -> None:
    tmp = study_dir / f".{OUTCOME}.tmp"
    tmp.write_text(json.dumps({"status": status, "error": error}))
    os.replace(tmp, study_dir / OUTCOME)


def main(study_dir: Path) -> int:
    from search_spaces import parse_spec
    from service.runner.study import RunnerSettings, run_study

    def on_term(signum, frame):  # a cancel: leave no outcome, the service records it
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, on_term)
    (study_dir / OUTCOME).unlink(missing_ok=True)
    spec = parse_spec(json.loads((study_dir / "spec.json").read_text()), source="spec.json")
    env = os.environ
    settings = RunnerSettings(
        tracking_uri=env.get("PCD_MLFLOW_TRACKING_URI") or None,
        optuna_storage=env.get("PCD_OPTUNA_STORAGE") or None,
        ray_address=env.get("PCD_RAY_ADDRESS") or None,
        tune_storage=env.get("PCD_TUNE_STORAGE") or None,
        data_root=Path(env["PCD_DATA_ROOT"]) if env.get("PCD_DATA_ROOT") else None,
        teacher_root=Path(env["PCD_TEACHER_ROOT"]) if env.get("PCD_TEACHER_ROOT") else None,
        num_cpus=int(env["PCD_LOCAL_CPUS"]) if env.get("PCD_LOCAL_CPUS") else None,
    )
    try:
        run_study(spec, study_dir, settings)
    except SystemExit:
        raise
    except Exception as err:  # any failure is recorded with its reason
        traceback.print_exc()
        write_outcome(study_dir, "failed", f"{type(err).__name__}: {err}")
        return 1
    write_outcome(study_dir, "succeeded")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
