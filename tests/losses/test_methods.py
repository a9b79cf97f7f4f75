"""The method registry: options, defaults, errors, and the losses each method returns."""

from __future__ import annotations

import pytest
import torch

from pcd_core.losses import kd_loss, pcd_loss
from pcd_core.methods import (
    METHODS,
    MethodOptionError,
    build_method,
    method_defaults,
    needs_teacher,
    options_schema,
)


def _batch(classes=10, seed=0):
    gen = torch.Generator().manual_seed(seed)
    s = torch.randn(16, classes, generator=gen)
    t = torch.randn(16, classes, generator=gen) * 2
    y = torch.randint(0, classes, (16,), generator=gen)
    return s, t, y


def test_registry_lists_each_method_once() -> None:
    assert list(METHODS) == ["ce", "kd", "dkd", "pcd"]
    for name in METHODS:
        method = build_method(name)
        assert method.name == name
        assert options_schema(name)["type"] == "object"
    # "needs a teacher?" is one registry fact; instances read it, whatever their options
    assert [n for n in METHODS if needs_teacher(n)] == ["kd", "dkd", "pcd"]
    for name, spec in METHODS.items():
        assert build_method(name).needs_teacher is spec.needs_teacher is needs_teacher(name)
    assert build_method("pcd", {"schedule": "released"}).needs_teacher
    assert method_defaults("pcd")["temperature"] == 4.0
    assert method_defaults("pcd")["stages"] == 3
    assert method_defaults("kd") == {
        "temperature": 4.0,
        "ce_weight": 0.1,
        "kd_weight": 0.9,
        "standardize": False,
    }
    assert method_defaults("dkd")["beta"] == 8.0


@pytest.mark.parametrize(
    "name,options,message",
    [
        ("pcd", {"temprature": 4}, "unknown option 'temprature'; allowed options: temperature"),
        ("pcd", {"temperature": 0}, "option 'temperature': Input should be greater than 0"),
        ("pcd", {"stages": 0}, "option 'stages': Input should be greater than or equal to 1"),
        ("pcd", {"schedule": "curriculum"}, "'joint', 'phased' or 'released'"),
        ("pcd", {"ranking": "random"}, "'abs_gap', 'teacher' or 'none'"),
        ("pcd", {"split_ratio": 2.0}, "split_ratio is only used with split='geometric'"),
        ("pcd", {"schedule": "released", "weighting": "none"}, "leave ranking, split"),
        ("kd", {"alpha": 1.0}, "unknown option 'alpha'"),
        ("dkd", {"beta": -1}, "option 'beta'"),
        ("ce", {"temperature": 4}, "unknown option 'temperature'"),
        ("fitnet", {}, "unknown method 'fitnet'; choose one of ce, kd, dkd, pcd"),
    ],
)
def test_bad_options_are_named(name, options, message) -> None:
    with pytest.raises(MethodOptionError, match=message.replace("(", r"\(")):
        build_method(name, options)


def test_string_options_are_coerced_like_a_cli() -> None:
    method = build_method("pcd", {"temperature": "2", "standardize": "true", "stages": "5"})
    assert method.options.temperature == 2.0
    assert method.options.standardize is True
    assert method.options.stages == 5


def test_ce_method() -> None:
    s, _, y = _batch()
    out = build_method("ce").losses(s, None, y, epoch=1, total_epochs=10)
    torch.testing.assert_close(out["ce"], torch.nn.functional.cross_entropy(s, y))


def test_kd_method_weights() -> None:
    s, t, y = _batch()
    out = build_method("kd").losses(s, t, y, epoch=1, total_epochs=10)
    torch.testing.assert_close(out["kd"], 0.9 * kd_loss(s, t, temperature=4.0))
    torch.testing.assert_close(out["ce"], 0.1 * torch.nn.functional.cross_entropy(s, y))


def test_pcd_method_warmup_and_schedules() -> None:
    s, t, y = _batch()
    method = build_method("pcd", {"warmup": 4})
    full = pcd_loss(s, t, temperature=4.0, group_counts=[3, 2, 1, 1, 2, 3])
    out1 = method.losses(s, t, y, epoch=1, total_epochs=10)
    out8 = method.losses(s, t, y, epoch=8, total_epochs=10)
    torch.testing.assert_close(out1["pcd"], full / 4)
    torch.testing.assert_close(out8["pcd"], full)
    # default warm-up: 1/12 of the run (20 of 240 epochs)
    default = build_method("pcd")
    torch.testing.assert_close(default.losses(s, t, y, epoch=10, total_epochs=240)["pcd"], full / 2)
    phased = build_method("pcd", {"schedule": "phased", "stages": 2, "warmup": 0})
    assert [phased.group_counts(e, 8) for e in range(1, 9)] == [
        [2],
        [2],
        [1],
        [1],
        [1],
        [1],
        [2],
        [2],
    ]
    torch.testing.assert_close(
        phased.losses(s, t, y, epoch=1, total_epochs=8)["pcd"],
        pcd_loss(s, t, temperature=4.0, group_counts=[2]),
    )


def test_pcd_and_dkd_check_the_class_count() -> None:
    build_method("pcd", {"stages": 10}).check(10)
    with pytest.raises(MethodOptionError, match="11 stages need at least as many classes"):
        build_method("pcd", {"stages": 11}).check(10)
    with pytest.raises(MethodOptionError, match="at least 3 classes"):
        build_method("dkd").check(2)


def test_dkd_method_terms() -> None:
    s, t, y = _batch()
    out = build_method("dkd", {"warmup": 0}).losses(s, t, y, epoch=1, total_epochs=10)
    assert set(out) == {"ce", "tckd", "nckd"}
    assert all(torch.isfinite(v) and v.item() >= 0 for v in out.values())


@pytest.mark.parametrize("name", ["ce", "kd", "dkd", "pcd"])
def test_every_term_keeps_float64_and_lifts_bf16_to_float32(name) -> None:
    """float64 inputs stay float64 (gradcheck, references); bf16 (autocast) is lifted to fp32.
    On an H100 the cross-entropy term was the one that silently dropped float64 to float32."""
    method = build_method(name, {})
    gen = torch.Generator().manual_seed(0)
    s, t = torch.randn(8, 10, generator=gen), torch.randn(8, 10, generator=gen)
    y = torch.randint(0, 10, (8,), generator=gen)
    for dtype, expected in ((torch.float64, torch.float64), (torch.bfloat16, torch.float32)):
        terms = method.losses(s.to(dtype), t.to(dtype), y, epoch=5, total_epochs=12)
        assert {k: v.dtype for k, v in terms.items()} == dict.fromkeys(terms, expected)


def test_docs_method_md_explains_every_pcd_option_and_value() -> None:
    """docs/method.md names each option of the pcd method and each allowed value."""
    import typing
    from pathlib import Path

    from pcd_core.methods import PCDOptions

    text = (Path(__file__).resolve().parents[2] / "docs" / "method.md").read_text()
    for name, field in PCDOptions.model_fields.items():
        assert f"`{name}`" in text, name
        for value in typing.get_args(field.annotation):
            if isinstance(value, str):
                assert f"`{value}`" in text, (name, value)
