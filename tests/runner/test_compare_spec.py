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


def test_a_preset_stands_for_its_entries_and_reference() -> None:
    spec = _spec({"preset": "pcd-ablation", "seeds": 2})
    comparison = spec.comparison
    assert comparison is not None and comparison.reference_name == "pcd"
    names = [e.name for e in comparison.entries]
    assert {"pcd S=1", "pcd S=2", "pcd S=5", "pcd weighting=none", "ce"} <= set(names)
    assert {"pcd ranking=teacher", "pcd ranking=none", "kd ce_weight=1"} <= set(names)
    # PCD and KD at PCD's CE weight are searched with the budget; the ablations inherit PCD's
    searched = {e.name for e in comparison.entries if e.searches()}
    assert searched == {"pcd", "kd ce_weight=1"}
    assert all(e.tuned_from == "pcd" for e in comparison.entries if e.name.startswith("pcd "))
    kd = comparison.entry("kd ce_weight=1")
    assert kd.resolved_space()["ce_weight"] == FixedParam(type="fixed", value=1.0)
    assert comparison.entry("pcd").resolved_space()["stages"] == FixedParam(type="fixed", value=3)
    # the stored spec holds the entries themselves, and reads back the same
    stored = spec.model_dump(mode="json")
    assert "preset" not in stored["comparison"] and len(stored["comparison"]["entries"]) == 9
    assert parse_spec(stored) == spec
    # the preset's reference is a default: the user's own wins
    assert _spec({"preset": "pcd-ablation", "reference": "ce"}).comparison.reference_name == "ce"


@pytest.mark.parametrize(
    "comparison,message",
    [
        ({"preset": "nope"}, "comparison: preset: unknown preset 'nope'; one of pcd-ablation"),
        ({"preset": "pcd-ablation", "entries": ["ce", "kd"]}, "preset: give either a preset"),
        ({"preset": 3}, "preset: a name, one of pcd-ablation"),
    ],
)
def test_bad_presets_name_the_field(comparison: dict, message: str) -> None:
    with pytest.raises(SpecError) as err:
        _spec(comparison)
    assert message in str(err.value)


def test_the_ablation_preset_needs_five_classes() -> None:
    spec = _spec({"preset": "pcd-ablation"})
    spec.check_classes(5)
    with pytest.raises(ValueError, match=r"\(pcd S=5\): space: pcd option 'stages': 5 stages"):
        spec.check_classes(4)
