"""The study store on SQLite and on the real Postgres: migrations, idempotency, pagination,
and the status state machine."""

from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import create_engine, inspect, text

from service.store import InvalidTransition, Store, StudyStatus, migrate
from service.store.db import IdempotencyConflict

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
        migrate(url)
        yield Store(url)
        return
    schema = f"pcd_test_{uuid.uuid4().hex[:8]}"
    admin = create_engine(POSTGRES)
    with admin.begin() as conn:
        conn.execute(text(f"create schema {schema}"))
    kw = {"connect_args": {"options": f"-csearch_path={schema}"}}
    try:
        migrate(POSTGRES, **kw)
        migrate(POSTGRES, **kw)  # idempotent: already at head
        s = Store(POSTGRES, **kw)
        yield s
        s.engine.dispose()
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"drop schema {schema} cascade"))
        admin.dispose()


SPEC = {"name": "pcd-digits", "budget": {"trials": 4}}


def test_schema_is_migrated(store: Store) -> None:
    columns = {c["name"] for c in inspect(store.engine).get_columns("studies")}
    assert {"id", "status", "spec", "idempotency_key", "driver", "attempts"} <= columns
    assert "pcd_alembic_version" in inspect(store.engine).get_table_names()


def test_create_get_list_and_count(store: Store) -> None:
    ids = [store.create(f"s{i}", {**SPEC, "i": i})[0].id for i in range(5)]
    record = store.get(ids[0])
    assert record is not None and record.status == "queued" and record.spec["i"] == 0
    page, total = store.list(limit=2)
    assert total == 5 and len(page) == 2
    rest, _ = store.list(offset=2, limit=10)
    assert len({r.id for r in page + rest}) == 5
    store.transition(ids[1], StudyStatus.running)
    running, n = store.list(status=StudyStatus.running)
    assert n == 1 and running[0].id == ids[1]
    assert store.counts() == {"queued": 4, "running": 1}
    assert store.get("missing") is None


def test_idempotency_key(store: Store) -> None:
    first, created = store.create("a", SPEC, idempotency_key="key-1")
    again, created_again = store.create("a", SPEC, idempotency_key="key-1")
    assert created and not created_again and again.id == first.id
    with pytest.raises(IdempotencyConflict, match="different study"):
        store.create("a", {**SPEC, "budget": {"trials": 5}}, idempotency_key="key-1")
    assert store.list()[1] == 1


def test_state_machine(store: Store) -> None:
    study = store.create("a", SPEC)[0]
    with pytest.raises(InvalidTransition, match="a queued study cannot become succeeded"):
        store.transition(study.id, StudyStatus.succeeded)
    running = store.transition(study.id, StudyStatus.running, driver="pid:1")
    assert running.attempts == 1 and running.started_at is not None and running.driver == "pid:1"
    failed = store.transition(study.id, StudyStatus.failed, error="driver vanished")
    assert failed.error == "driver vanished" and failed.finished_at is not None
    requeued = store.transition(study.id, StudyStatus.queued)  # resume
    assert requeued.error is None and requeued.finished_at is None
    store.transition(study.id, StudyStatus.running)
    done = store.transition(study.id, StudyStatus.succeeded)
    assert done.attempts == 2
    with pytest.raises(InvalidTransition, match="a succeeded study cannot become queued"):
        store.transition(study.id, StudyStatus.queued)
    with pytest.raises(InvalidTransition, match="is succeeded, not running"):
        store.transition(study.id, StudyStatus.failed, expected=StudyStatus.running)
    with pytest.raises(KeyError):
        store.transition("missing", StudyStatus.running)


def test_delete_only_finished(store: Store) -> None:
    study = store.create("a", SPEC)[0]
    with pytest.raises(InvalidTransition, match="cannot be deleted; cancel it first"):
        store.delete(study.id)
    store.transition(study.id, StudyStatus.cancelled)
    store.delete(study.id)
    assert store.get(study.id) is None


def test_concurrent_transitions_only_one_wins(store: Store) -> None:
    study = store.create("a", SPEC)[0]
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def claim() -> None:
        barrier.wait()
        try:
            store.transition(study.id, StudyStatus.running, expected=StudyStatus.queued)
            outcomes.append("won")
        except InvalidTransition:
            outcomes.append("lost")

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["lost", "lost", "lost", "won"]
    assert store.get(study.id).attempts == 1


def _before_statement(store: Store, verb: str, action) -> None:
    """Run ``action`` (on another connection) just before this store's next ``verb``
    statement: a concurrent writer landing in the middle of a store call, deterministically."""
    from sqlalchemy import event

    fired = []

    def hook(conn, cursor, statement, parameters, context, executemany) -> None:
        if not fired and statement.lstrip().upper().startswith(verb):
            fired.append(statement)
            action()

    event.listen(store.engine, "before_cursor_execute", hook)


def test_a_resume_during_a_delete_keeps_the_study(store: Store) -> None:
    study = store.create("a", SPEC)[0]
    store.transition(study.id, StudyStatus.cancelled)
    _before_statement(store, "DELETE", lambda: store.transition(study.id, StudyStatus.queued))
    with pytest.raises(InvalidTransition, match="a queued study cannot be deleted"):
        store.delete(study.id)
    assert store.get(study.id).status == "queued"  # the resume's answer stays true


def test_a_delete_during_a_transition_is_a_key_error(store: Store) -> None:
    study = store.create("a", SPEC)[0]
    store.transition(study.id, StudyStatus.cancelled)

    def delete_it() -> None:
        with store.engine.begin() as conn:
            conn.execute(text("delete from studies where id = :id"), {"id": study.id})

    _before_statement(store, "UPDATE", delete_it)
    with pytest.raises(KeyError):
        store.transition(study.id, StudyStatus.queued)
    with pytest.raises(KeyError):
        store.delete(study.id)


def test_ids_no_database_can_hold_are_unknown(store: Store) -> None:
    assert store.get("a\x00b") is None and store.by_idempotency_key("k\x00") is None
    with pytest.raises(KeyError):
        store.transition("a\x00b", StudyStatus.queued)
    with pytest.raises(KeyError):
        store.delete("a\x00b")


def test_the_parent_run_is_recorded_once(store: Store) -> None:
    """The column was never written; the supervisor now records the driver's parent run."""
    record, _ = store.create("s", SPEC)
    store.record_parent_run(record.id, None)  # the driver has not made it yet
    assert store.get(record.id).parent_run_id is None
    store.record_parent_run(record.id, "run-a")
    store.record_parent_run(record.id, "run-b")  # a later one does not replace it
    assert store.get(record.id).parent_run_id == "run-a"
