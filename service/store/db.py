"""Store access: migrations, creation with idempotency keys, listing, checked transitions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, delete, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from service.store.models import (
    FINISHED,
    TRANSITIONS,
    InvalidTransition,
    StudyRecord,
    StudyStatus,
)

MIGRATIONS = Path(__file__).with_name("migrations")
CONNECT_TIMEOUT_S = 5


class IdempotencyConflict(ValueError):
    """An Idempotency-Key reused with a different request body."""


def _storable(key: str) -> bool:
    """Whether ``key`` can be looked up at all (no database takes a NUL in a string)."""
    return "\x00" not in key


def _engine(url: str, **kw: Any) -> Engine:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        kw.setdefault("connect_args", {"check_same_thread": False})
    elif url.startswith("postgresql"):  # an unreachable server fails fast (503), never hangs
        kw["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S, **kw.get("connect_args", {})}
    return create_engine(url, pool_pre_ping=True, **kw)


def migrate(url: str, **engine_kw: Any) -> None:
    """Bring the database at ``url`` to the latest schema (Alembic ``upgrade head``)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    engine = _engine(url, **engine_kw)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    engine.dispose()


class Store:
    """The study store. Status changes are compare-and-set: two writers cannot both move a
    study out of the same status."""

    def __init__(self, url: str, **engine_kw: Any) -> None:
        self.engine = _engine(url, **engine_kw)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    def create(
        self, name: str, spec: dict[str, Any], *, idempotency_key: str | None = None
    ) -> tuple[StudyRecord, bool]:
        """A new queued study, or (for a repeated Idempotency-Key with the same spec) the one
        created before. Returns (record, created)."""
        if idempotency_key is not None:
            existing = self.by_idempotency_key(idempotency_key)
            if existing is not None:
                return self._same_request(existing, spec), False
        try:
            with self.session() as s:
                record = StudyRecord(name=name, spec=spec, idempotency_key=idempotency_key)
                s.add(record)
            return record, True
        except IntegrityError:  # a concurrent request with the same key won the race
            existing = self.by_idempotency_key(idempotency_key or "")
            if existing is None:
                raise
            return self._same_request(existing, spec), False

    @staticmethod
    def _same_request(existing: StudyRecord, spec: dict[str, Any]) -> StudyRecord:
        if existing.spec != spec:
            raise IdempotencyConflict(
                "this Idempotency-Key was used for a different study; use a new key"
            )
        return existing

    def by_idempotency_key(self, key: str) -> StudyRecord | None:
        if not _storable(key):
            return None
        with self.session() as s:
            return s.scalar(select(StudyRecord).where(StudyRecord.idempotency_key == key))

    def get(self, study_id: str) -> StudyRecord | None:
        if not _storable(study_id):
            return None
        with self.session() as s:
            return s.get(StudyRecord, study_id)

    def list(
        self, *, status: StudyStatus | None = None, offset: int = 0, limit: int = 50
    ) -> tuple[list[StudyRecord], int]:
        """A page of studies, newest first, and the total count."""
        query = select(StudyRecord)
        count = select(func.count()).select_from(StudyRecord)
        if status is not None:
            query = query.where(StudyRecord.status == status.value)
            count = count.where(StudyRecord.status == status.value)
        query = query.order_by(StudyRecord.created_at.desc(), StudyRecord.id).offset(offset)
        with self.session() as s:
            return list(s.scalars(query.limit(limit))), int(s.scalar(count) or 0)

    def counts(self) -> dict[str, int]:
        with self.session() as s:
            rows = s.execute(select(StudyRecord.status, func.count()).group_by(StudyRecord.status))
            return {status: int(n) for status, n in rows}

    def transition(
        self,
        study_id: str,
        to: StudyStatus,
        *,
        expected: StudyStatus | None = None,
        **fields: Any,
    ) -> StudyRecord:
        """Move a study to ``to`` if the state machine allows it from its current status
        (and, given ``expected``, only from that one). ``fields`` are set in the same
        statement (error, driver, study_dir, parent_run_id). KeyError: no such study (any
        more); the record returned is the one this transaction wrote."""
        if not _storable(study_id):
            raise KeyError(study_id)
        with self.session() as s:
            record = s.get(StudyRecord, study_id)
            if record is None:
                raise KeyError(study_id)
            current = StudyStatus(record.status)
            if expected is not None and current != expected:
                raise InvalidTransition(f"study {study_id} is {current}, not {expected}")
            if to not in TRANSITIONS[current]:
                raise InvalidTransition(f"a {current} study cannot become {to}")
            values: dict[str, Any] = {"status": to.value, **fields}
            now = datetime.now(UTC)
            if to == StudyStatus.running:
                values["started_at"] = now
                values["attempts"] = StudyRecord.attempts + 1
            if to in FINISHED:
                values["finished_at"] = now
            if to == StudyStatus.queued:
                values.update(finished_at=None, error=None)
            result = s.execute(
                update(StudyRecord)
                .where(StudyRecord.id == study_id, StudyRecord.status == current.value)
                .values(**values)
            )
            if result.rowcount != 1:
                if s.scalar(select(StudyRecord.id).where(StudyRecord.id == study_id)) is None:
                    raise KeyError(study_id)  # deleted meanwhile
                raise InvalidTransition(f"study {study_id} changed status concurrently")
            s.refresh(record)
        return record

    def record_parent_run(self, study_id: str, parent_run_id: str | None) -> None:
        """Record the study's MLflow parent run (where its results are), once its driver has
        made it; nothing when ``parent_run_id`` is None or one is recorded already."""
        if parent_run_id is None:
            return
        with self.session() as s:
            s.execute(
                update(StudyRecord)
                .where(StudyRecord.id == study_id, StudyRecord.parent_run_id.is_(None))
                .values(parent_run_id=parent_run_id)
            )

    def set_budget(self, study_id: str, trials: int) -> StudyRecord:
        """Change a queued or running study's trial budget (compare-and-set on its status:
        InvalidTransition for any other; KeyError if there is no such study)."""
        if not _storable(study_id):
            raise KeyError(study_id)
        open_statuses = [StudyStatus.queued.value, StudyStatus.running.value]
        with self.session() as s:
            result = s.execute(
                update(StudyRecord)
                .where(StudyRecord.id == study_id, StudyRecord.status.in_(open_statuses))
                .values(budget_trials=trials)
            )
            record = s.get(StudyRecord, study_id)
            if record is None:
                raise KeyError(study_id)
            if result.rowcount != 1:
                raise InvalidTransition(
                    f"a {record.status} study's budget cannot change; only a queued or "
                    "running study's can"
                )
            s.refresh(record)
        return record

    def unstart(self, study_id: str, reason: str) -> None:
        """Put a study whose driver could not be launched back in the queue: the attempt is
        not counted, and ``reason`` is shown as its error until it starts."""
        with self.session() as s:
            s.execute(
                update(StudyRecord)
                .where(
                    StudyRecord.id == study_id,
                    StudyRecord.status == StudyStatus.running.value,
                    StudyRecord.driver == "starting",
                )
                .values(
                    status=StudyStatus.queued.value,
                    attempts=StudyRecord.attempts - 1,
                    started_at=None,
                    driver=None,
                    error=reason,
                )
            )

    def delete(self, study_id: str) -> None:
        """Delete a finished study (its MLflow runs stay). Compare-and-set like transitions:
        a study resumed meanwhile is not deleted (InvalidTransition); KeyError if gone."""
        if not _storable(study_id):
            raise KeyError(study_id)
        finished = [status.value for status in FINISHED]
        with self.session() as s:
            result = s.execute(
                delete(StudyRecord).where(
                    StudyRecord.id == study_id, StudyRecord.status.in_(finished)
                )
            )
            if result.rowcount == 1:
                return
            status = s.scalar(select(StudyRecord.status).where(StudyRecord.id == study_id))
        if status is None:
            raise KeyError(study_id)
        raise InvalidTransition(f"a {status} study cannot be deleted; cancel it first")
