"""Resume, cancel and delete of one study sent at once from several threads: every answer
is one the state machine allows, a deleted study never gets a 202, and the study never has
two drivers at a time."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from pcd_testing.servers import drivers

from .conftest import Stack, study

pytestmark = pytest.mark.slow  # real processes: a study each

ROUNDS = 3
THREADS = 6


class DriverWatch:
    """Samples the study's drivers every 50 ms; the most seen at once."""

    def __init__(self, study_id: str, most: int = 0) -> None:
        self.study_id, self.most, self.pids = study_id, most, set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            found = drivers(self.study_id)
            self.most = max(self.most, len(found))
            self.pids |= {p.pid for p in found}
            self._stop.wait(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _race(stack: Stack, study_id: str, actions: list[str]) -> list[tuple[str, int, float]]:
    """Send the actions at once; (action, status, time the answer came)."""
    barrier = threading.Barrier(len(actions))

    def send(action: str) -> tuple[str, int, float]:
        with stack.api.client() as c:
            barrier.wait()
            if action == "delete":
                response = c.delete(f"/v1/studies/{study_id}")
            else:
                response = c.post(f"/v1/studies/{study_id}/{action}")
            if response.status_code >= 400:
                assert response.headers["content-type"].startswith("application/problem+json")
            return action, response.status_code, time.monotonic()

    with ThreadPoolExecutor(len(actions)) as pool:
        return list(pool.map(send, actions))


def test_resume_cancel_delete_races(stack: Stack) -> None:
    study_id = stack.submit(study(trials=2, epochs=3))
    watch = DriverWatch(study_id)
    answers: list[tuple[str, int, float]] = []
    try:
        # a running study: cancels and resumes at once
        stack.wait(study_id, {"running"}, timeout=60)
        for _ in range(ROUNDS):
            got = _race(stack, study_id, ["cancel", "resume"] * (THREADS // 2))
            answers += got
            assert {s for _, s, _ in got} <= {202, 409}, got
            # the 202s alternate from running: cancel, resume, cancel, ...
            cancels = sum(1 for a, s, _ in got if (a, s) == ("cancel", 202))
            resumes = sum(1 for a, s, _ in got if (a, s) == ("resume", 202))
            after = stack.get(study_id)["status"]
            if after == "succeeded":  # it finished before the first cancel
                break
            assert cancels - resumes == (1 if after == "cancelled" else 0), (got, after)
            if after == "cancelled":
                with stack.api.client() as c:
                    assert c.post(f"/v1/studies/{study_id}/resume").status_code == 202
            stack.wait(study_id, {"running", "succeeded"}, timeout=60)
        # a cancelled study: resumes against deletes, exactly one kind wins
        answers += _race(stack, study_id, ["cancel"])
        if stack.wait(study_id, {"cancelled", "succeeded"}, timeout=60)["status"] == "cancelled":
            got = _race(stack, study_id, ["resume", "delete"] * (THREADS // 2))
            answers += got
            won = {(a, s) for a, s, _ in got} & {("resume", 202), ("delete", 204)}
            assert len(won) == 1, got
            assert {s for _, s, _ in got} <= {202, 204, 404, 409}, got
            if won == {("delete", 204)}:
                assert all(s != 202 for _, s, _ in got), got
                time.sleep(2.5)  # a supervisor tick: nothing relaunches a deleted study
                with stack.api.client() as c:
                    assert c.get(f"/v1/studies/{study_id}").status_code == 404
                    for action in ("resume", "cancel"):
                        assert c.post(f"/v1/studies/{study_id}/{action}").status_code == 404
                assert not drivers(study_id) and not (stack.studies_dir / study_id).exists()
                stack.figures["deleted"] = study_id
                watch.stop()
                study_id = stack.submit(study(trials=2, epochs=3))  # another runs as ever
                watch = DriverWatch(study_id, watch.most)
            else:
                stack.wait(study_id, {"running", "succeeded"}, timeout=60)
        stack.finished(study_id, trials=2)
    finally:
        watch.stop()
    stack.fault(f"{len(answers)} concurrent resume/cancel/delete requests")
    stack.figures["answers"] = sorted({f"{a} {s}" for a, s, _ in answers})
    stack.figures["most_drivers_at_once"] = watch.most
    assert watch.most <= 1, watch.pids
