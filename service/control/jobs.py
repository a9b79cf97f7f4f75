"""Study drivers as Ray Jobs: the Jobs API of a cluster's head (``PCD_RAY_ADDRESS`` an
``http(s)://HEAD:8265`` URL). Each driver runs on the head and joins the cluster; its output
goes to the driver log in the (shared) study folder, as a local driver's does."""

from __future__ import annotations

import logging
import secrets
import shlex
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class RayJobs:
    def __init__(self, address: str) -> None:
        self.address = address
        self._client: Any = None  # made on first use: it imports Ray

    def _jobs(self) -> Any:
        if self._client is None:
            from ray.job_submission import JobSubmissionClient

            self._client = JobSubmissionClient(self.address)
        return self._client

    def submit(self, study_id: str, args: list[str], log_file: Path, env: dict[str, str]) -> str:
        """Run ``args`` (a driver command line) as a Ray Job with ``env``; its submission id."""
        command = " ".join(shlex.quote(arg) for arg in args)
        entrypoint = f"{command} >> {shlex.quote(str(log_file))} 2>&1"
        submission_id = f"pcd-{study_id}-{secrets.token_hex(3)}"
        self._jobs().submit_job(
            entrypoint=entrypoint,
            submission_id=submission_id,
            runtime_env={"env_vars": env},
            metadata={"pcd_study": study_id},
        )
        return submission_id

    def alive(self, submission_id: str) -> bool:
        """Whether the job is pending or running; True when the cluster cannot be asked (do
        not act on what we cannot see)."""
        from ray.job_submission import JobStatus

        try:
            status = self._jobs().get_job_status(submission_id)
        except RuntimeError as err:  # the cluster does not know the job (e.g. it restarted)
            if "does not exist" in str(err):
                return False
            log.warning("Ray Jobs API: %s; assuming job %s still runs", err, submission_id)
            return True
        except Exception as err:  # unreachable cluster
            log.warning("Ray Jobs API unreachable (%s); assuming job %s runs", err, submission_id)
            return True
        return status in (JobStatus.PENDING, JobStatus.RUNNING)

    def stop(self, submission_id: str, timeout: float) -> None:
        """Stop the job and wait up to ``timeout`` seconds for it to end."""
        self._jobs().stop_job(submission_id)
        deadline = time.monotonic() + timeout
        while self.alive(submission_id) and time.monotonic() < deadline:
            time.sleep(0.2)
