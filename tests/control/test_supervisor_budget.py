"""The supervisor hands a study's changed trial budget to its driver (budget.json): at launch
(a budget changed while queued, or before a resume), and on reconcile (a change that raced a
launch). Stand-in drivers as in test_supervisor."""

from __future__ import annotations

from service.study_files import StopReason, StudyFolder

from .test_supervisor import supervised  # noqa: F401


def test_a_changed_budget_reaches_the_study_folder(supervised) -> None:  # noqa: F811
    store, supervisor = supervised
    study, _ = store.create("s", {"name": "s", "budget": {"trials": 4}})
    store.set_budget(study.id, 7)  # while queued
    supervisor.reconcile()  # launched
    folder = StudyFolder(supervisor.study_dir(study.id))
    assert store.get(study.id).status == "running"
    assert folder.read_budget().trials == 7
    folder.budget_file.unlink()  # as if the launch had raced the change
    supervisor.reconcile()
    assert folder.read_budget().trials == 7

    untouched, _ = store.create("u", {"name": "u", "budget": {"trials": 4}})
    supervisor.reconcile()
    assert StudyFolder(supervisor.study_dir(untouched.id)).read_budget() is None  # the spec's


def test_a_resume_forgets_a_failed_trial_limit_stop_but_not_a_goal(supervised) -> None:  # noqa: F811
    store, supervisor = supervised
    study, _ = store.create("f", {"name": "f"})
    folder = StudyFolder(supervisor.study_dir(study.id))
    folder.path.mkdir(parents=True)
    folder.write_stop(StopReason(kind="failed_trials", trial_id="t1", detail="2 trials failed"))
    supervisor.reconcile()  # launched: a first start or a resume
    assert store.get(study.id).status == "running"
    assert folder.read_stop() is None

    goal = StopReason(kind="goal", trial_id="t2", detail="goal reached")
    folder.write_stop(goal)
    supervisor.launch(study.id, study.spec, attempt=2)
    assert folder.read_stop() == goal
