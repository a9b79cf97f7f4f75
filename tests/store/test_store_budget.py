"""A study's trial budget changed after submit, on SQLite and on the real Postgres: only a
queued or running study's, compare-and-set on its status; the spec's budget until then."""

from __future__ import annotations

import pytest
from test_store import SPEC, store  # noqa: F401

from service.store import InvalidTransition, Store, StudyStatus


def test_budget_changes_only_while_queued_or_running(store: Store) -> None:  # noqa: F811
    record, _ = store.create("s", SPEC)
    assert record.budget_trials is None and record.trial_budget == 4  # the spec's
    assert store.set_budget(record.id, 9).trial_budget == 9
    store.transition(record.id, StudyStatus.running, driver="pid:1")
    assert store.set_budget(record.id, 12).budget_trials == 12
    store.transition(record.id, StudyStatus.failed)
    with pytest.raises(InvalidTransition, match="a failed study's budget cannot change"):
        store.set_budget(record.id, 20)
    assert store.get(record.id).trial_budget == 12
    store.transition(record.id, StudyStatus.queued)  # a resume keeps the changed budget
    assert store.get(record.id).trial_budget == 12
    with pytest.raises(KeyError):
        store.set_budget("no-such-study", 3)
