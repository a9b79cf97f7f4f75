"""`pcd study extend ID --trials N` against the API in this process (as in
test_study_commands): the short id, the new budget in a line or --json, one-line errors;
`study show` shows the study's limits and stop reason."""

from __future__ import annotations

import json

from test_study_commands import finished, invoke, one_error_line, store  # noqa: F401

from service.store import Store, StudyStatus
from service.study_files import StopReason, StudyFolder


def test_extend_changes_the_budget_by_short_id(store: Store) -> None:  # noqa: F811
    record, _ = store.create("demo", {"budget": {"trials": 4}})
    result = invoke("study", "extend", record.id[:8], "--trials", "12")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"study {record.id[:8]} (queued): budget 12 trials, 0 done"
    assert store.get(record.id).budget_trials == 12
    raw = invoke("study", "extend", record.id[:8], "--trials", "13", "--json")
    assert json.loads(raw.stdout)["limits"]["trials"] == 13
    shown = invoke("study", "show", record.id[:8])
    assert "budget 13 trials; goal -; failed-trial limit -" in shown.stdout, shown.stdout


def test_extend_errors_are_one_line(store: Store) -> None:  # noqa: F811
    record, _ = store.create("demo", {"budget": {"trials": 4}})
    line = one_error_line(invoke("study", "extend", record.id[:8], "--trials", "0"), 2)
    assert "budget.trials" in line
    done = finished(store)
    line = one_error_line(invoke("study", "extend", done[:8], "--trials", "9"), 2)
    assert "a succeeded study's budget cannot change" in line
    line = one_error_line(invoke("study", "extend", "zz", "--trials", "9"), 2)
    assert "no study id starts with 'zz'" in line


def test_show_gives_the_goal_the_failed_limit_and_the_stop_reason(
    store: Store,  # noqa: F811
    tmp_path,
) -> None:
    spec = {"budget": {"trials": 4, "max_failed_trials": 2}, "objective": {"goal": 95.5}}
    record, _ = store.create("demo", spec)
    folder = StudyFolder(tmp_path / "studies" / record.id)
    folder.path.mkdir(parents=True)
    store.transition(record.id, StudyStatus.running, driver="pid:1", study_dir=str(folder.path))
    detail = "goal reached by trial t3: val_top1 96 >= 95.5"
    folder.write_stop(StopReason(kind="goal", trial_id="t3", detail=detail))
    shown = invoke("study", "show", record.id[:8])
    assert shown.exit_code == 0, shown.output
    assert "budget 4 trials; goal 95.5; failed-trial limit 2" in shown.stdout, shown.stdout
    assert detail in " ".join(shown.stdout.split()), shown.stdout
