"""Tables of the study store."""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class StudyStatus(enum.StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


# Every allowed status change; anything else is refused. A resume goes back to queued.
TRANSITIONS: dict[StudyStatus, set[StudyStatus]] = {
    StudyStatus.queued: {StudyStatus.running, StudyStatus.cancelled, StudyStatus.failed},
    StudyStatus.running: {StudyStatus.succeeded, StudyStatus.failed, StudyStatus.cancelled},
    StudyStatus.failed: {StudyStatus.queued},
    StudyStatus.cancelled: {StudyStatus.queued},
    StudyStatus.succeeded: set(),
}
FINISHED = {StudyStatus.succeeded, StudyStatus.failed, StudyStatus.cancelled}


class InvalidTransition(ValueError):
    """A status change the state machine does not allow."""


def _now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class StudyRecord(Base):
    __tablename__ = "studies"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: uuid.uuid4().hex)
    name: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True, default=StudyStatus.queued.value)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    idempotency_key: Mapped[str | None] = mapped_column(String(128), unique=True, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    study_dir: Mapped[str | None] = mapped_column(Text, nullable=True)
    driver: Mapped[str | None] = mapped_column(String(128), nullable=True)  # pid or Ray job id
    parent_run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # the trial budget as changed after submit (None: the spec's budget.trials)
    budget_trials: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=_now, onupdate=_now
    )
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    @property
    def trial_budget(self) -> int:
        """The study's current search budget: as changed after submit, else the spec's."""
        if self.budget_trials is not None:
            return self.budget_trials
        return int((self.spec.get("budget") or {}).get("trials", 0))
