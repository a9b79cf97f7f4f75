"""Comparison specs: entries by name or in full, the reference, tuned_from, and errors that
name the field (also as the API's 422)."""

from __future__ import annotations

import pytest

from search_spaces import SpecError, parse_spec
from search_spaces.schema import FixedParam

BASE = {
    "name": "cmp",
    "teacher": {"arch": "cnn_small", "epochs": 1},
    "student": "mlp_32",
    "budget": {"trials": 2, "max_epochs": 2},
}


def _spec(comparison: dict, **extra):
    return parse_spec({**BASE, **extra, "comparison": comparison})


def test_entries_by_name_default_spaces_and_reference() -> None:
    spec = _spec({"entries": ["ce", "kd", "dkd", "pcd"]})
    assert spec.comparison is not None and spec.comparison.seeds == 3
    assert spec.comparison.reference_name == "pcd"
    ce, kd = spec.comparison.entries[:2]
    assert not ce.searches() and kd.searches()
    assert set(kd.resolved_space()) == {"temperature", "ce_weight", "kd_weight"}
    assert spec.entry_spec(kd).method == "kd" and spec.entry_spec(kd).budget == spec.budget
    assert _spec({"entries": ["ce", "kd"]}).comparison.reference_name == "ce"
    # a search spec dumps as it did: no comparison key
    assert "comparison" not in parse_spec(BASE).model_dump(mode="json")
    assert parse_spec(spec.model_dump(mode="json")) == spec  # the stored spec reads back


def test_tuned_from_inherits_the_options_and_its_fixed_override() -> None:
    ablation = {"name": "pcd S=1", "method": "pcd", "tuned_from": "pcd", "fixed": {"stages": 1}}
    spec = _spec({"entries": ["pcd", ablation]})
    entry = spec.comparison.entry("pcd S=1")
    assert not entry.searches()
    tuned = {"stages": 3, "temperature": 2.0, "alpha": 0.5, "schedule": "joint", "lr": 0.1}
    derived = spec.entry_spec(entry, tuned)
    assert derived.space["stages"] == FixedParam(type="fixed", value=1)
    assert derived.fixed_config() == {**tuned, "stages": 1}


CASES = [
    ({"entries": ["ce", "xx"]}, {}, "comparison: entries[1].method: unknown method 'xx'"),
    ({"entries": ["ce", "kd"], "reference": "pcd"}, {}, "reference: 'pcd' is not an entry"),
    (
        {"entries": ["ce", {"name": "a", "method": "pcd", "tuned_from": "zz"}]},
        {},
        "entries[1].tuned_from: 'zz' is not an entry",
    ),
    (
        {
            "entries": [
                {"name": "a", "method": "pcd", "tuned_from": "b"},
                {"name": "b", "method": "pcd", "tuned_from": "a"},
            ]
        },
        {},
        "entries[0].tuned_from: 'b' is itself tuned_from another entry (a cycle",
    ),
    (
        {"entries": ["ce", "kd"]},
        {"space": {"temperature": {"type": "fixed", "value": 2.0}}},
        "space: a comparison tunes each entry's own space",
    ),
    ({"entries": ["ce", "kd"]}, {"promotion": {"seeds": 5}}, "promotion: a comparison has no"),
    (
        {"entries": ["ce", {"name": "k", "method": "kd", "fixed": {"stages": 2}}]},
        {},
        "comparison.entries[1] (k): space.stages: not an option of method 'kd'",
    ),
    ({"entries": ["kd", "kd"]}, {}, "entries[1].name: 'kd' is not unique"),
]


@pytest.mark.parametrize("comparison,extra,message", CASES)
def test_bad_comparisons_name_the_field(comparison: dict, extra: dict, message: str) -> None:
    with pytest.raises(SpecError) as err:
        _spec(comparison, **extra)
    assert message in str(err.value)


def test_stages_beyond_the_classes_name_the_entry() -> None:
    spec = _spec({"entries": ["ce", "pcd"]})
    with pytest.raises(ValueError, match=r"comparison.entries\[1\] \(pcd\): space.stages"):
        spec.check_classes(2)
