"""Search-space specs: every shipped file loads; bad ones name the file, field and rule."""

from __future__ import annotations

import optuna
import pytest

from search_spaces import SpecError, builtin_names, load_spec, parse_spec
from service.runner.space import define_by_run, make_sampler


def test_builtin_spaces_load() -> None:
    assert {"pcd-digits", "pcd-cifar100", "kd-cifar100", "dkd-cifar100"} <= set(builtin_names())
    for name in builtin_names():
        spec = load_spec(name)
        assert spec.name == name
    cifar = load_spec("pcd-cifar100")
    assert cifar.space["stages"].low == 1 and cifar.space["stages"].high == 6
    assert cifar.space["split_ratio"].when == {"split": "geometric"}


@pytest.mark.parametrize(
    "override,message",
    [
        (
            {"space.temperature": {"type": "float", "low": 0, "high": 4}},
            "space.temperature: value 0.0 is not allowed: pcd: option 'temperature'",
        ),
        (
            {"space.temperature": {"type": "float", "low": 4, "high": 1}},
            "space.temperature.float: Value error, low (4.0) must be below high",
        ),
        ({"space.stages": {"type": "int", "low": 0, "high": 3}}, "space.stages: value 0"),
        ({"space.tempo": {"type": "fixed", "value": 1}}, "space.tempo: not an option of method"),
        (
            {"space.schedule": {"type": "categorical", "choices": ["joint", "curriculum"]}},
            "'joint', 'phased' or 'released'",
        ),
        (
            {"space.split_ratio": {"type": "float", "low": 1, "high": 2, "when": {"split": "x"}}},
            "space.split_ratio.when: 'split' must be a parameter listed before",
        ),
        ({"sampler.type": "grid"}, "grid sampling needs finite values"),
        ({"budget.trials": -1}, "budget.trials: Input should be greater than or equal to 0"),
        (
            {"budget.trials": 0},
            "budget.trials: 0 (a fixed-configuration study) needs every space parameter fixed",
        ),
        (
            {"budget.trials": 0, "space": {}, "promotion.seeds": 0},
            "needs promotion.seeds >= 1",
        ),
        ({"objective.metric": "test_top1"}, "objective.metric"),
        ({"objective.mode": "min"}, "val_top1 is optimised with mode='max'"),
        ({"student": "resnet9"}, "unknown model 'resnet9'"),
        ({"teacher": {"arch": "cnn_small", "checkpoint": "t.pt"}}, "either checkpoint"),
        ({"scheduler.grace_period": 50}, "grace_period must not exceed"),
        ({"training.optimizer": "adam"}, "training.optimizer: not a training option"),
        ({"resources.cpus": 1e6}, "resources.cpus: Input should be less than or equal to 1024"),
        ({"resources.gpus": 100}, "resources.gpus: Input should be less than or equal to 16"),
        (
            {"promotion.registered_model_name": "my model"},
            "promotion.registered_model_name: String should match pattern",
        ),
        ({"data.augment": "rotate"}, "data.augment: Input should be 'none', 'crop', 'flip'"),
        ({"data.image_size": 28}, "image_size applies to image_folder data only"),
        ({"data.image_size": 2}, "data.image_size: Input should be greater than or equal to 4"),
    ],
)
def test_bad_specs_name_file_field_and_rule(override, message) -> None:
    with pytest.raises(SpecError) as err:
        load_spec("pcd-digits", override)
    text = str(err.value)
    assert text.startswith(str(load_spec.__globals__["SPEC_DIR"] / "pcd-digits.yaml"))
    assert message.replace("space.temperature.float: Value error, ", "") in text or message in text


def test_data_options_reach_the_trials() -> None:
    """augment and image_size of a spec (the API body) are the trials' DataConfig."""
    from service.runner.trainable import TrialContext, trial_config

    def config(override: dict) -> object:
        spec = load_spec("pcd-digits", override)
        ctx = TrialContext(spec.model_dump(mode="json"), "t.pt", None, None, None, 0, "s")
        return trial_config(ctx, {}).data

    assert config({}).augment == "none"  # digits' default, written into the config
    assert config({"data.augment": "crop"}).augment == "crop"
    folder = config({"data": {"name": "image_folder", "root": "f", "image_size": 28}})
    assert folder.image_size == 28 and folder.augment == "none"
    assert "augment" not in load_spec("pcd-digits").model_dump()["data"]  # stored specs unchanged


def test_bad_files(tmp_path) -> None:
    with pytest.raises(SpecError, match="no search space named 'nope'"):
        load_spec("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(SpecError, match=r"bad.yaml: not valid YAML"):
        load_spec(bad)
    with pytest.raises(SpecError, match="must be a mapping"):
        parse_spec(["a list"])
    with pytest.raises(SpecError, match="file not found"):
        load_spec(tmp_path / "missing.yaml")


def test_conditional_parameter_only_sampled_when_its_condition_holds() -> None:
    spec = parse_spec(
        {
            "name": "cond",
            "teacher": {"arch": "cnn_small"},
            "student": "mlp_32",
            "space": {
                "split": {"type": "categorical", "choices": ["even", "geometric"]},
                "split_ratio": {
                    "type": "float",
                    "low": 0.5,
                    "high": 3,
                    "log": True,
                    "when": {"split": "geometric"},
                },
                "warmup": {"type": "fixed", "value": 3},
            },
            "sampler": {"type": "random"},
        }
    )
    study = optuna.create_study(sampler=make_sampler(spec))
    space = define_by_run(spec)
    seen = set()
    for _ in range(30):
        trial = study.ask()
        constants = space(trial)
        assert constants == {"warmup": 3}
        assert ("split_ratio" in trial.params) == (trial.params["split"] == "geometric")
        seen.add(trial.params["split"])
        study.tell(trial, 0.0)
    assert seen == {"even", "geometric"}


def test_grid_sampler_covers_the_grid() -> None:
    spec = load_spec(
        "pcd-digits",
        {
            "sampler.type": "grid",
            "space": {
                "stages": {"type": "int", "low": 1, "high": 3},
                "temperature": {"type": "float", "low": 2, "high": 4, "step": 2},
            },
        },
    )
    assert spec.grid_size() == 6
    study = optuna.create_study(sampler=make_sampler(spec), direction="maximize")
    space = define_by_run(spec)

    def objective(trial: optuna.Trial) -> float:
        space(trial)
        return 1.0

    study.optimize(objective, n_trials=10)  # the grid sampler stops the study when done
    combos = {(t.params["stages"], t.params["temperature"]) for t in study.trials}
    assert len(study.trials) == 6
    assert combos == {(s, t) for s in (1, 2, 3) for t in (2.0, 4.0)}


def test_ranges_are_checked_by_their_ends_never_enumerated(monkeypatch) -> None:
    from search_spaces.schema import MAX_GRID, FloatParam, IntParam

    for kind in (IntParam, FloatParam):
        monkeypatch.setattr(kind, "values", lambda self: pytest.fail("enumerated a range"))
    fine = {"type": "float", "low": 0.1, "high": 3.0, "step": 1e-9}  # ~2.9e9 values
    spec = load_spec("pcd-digits", {"space.alpha": fine})
    assert spec.space["alpha"].count() > 10**9 and spec.grid_size() > MAX_GRID
    huge = {"type": "int", "low": 0, "high": 10**12}
    with pytest.raises(SpecError, match=r"space\.warmup: 1e\+12 warm-up epochs exceed the run"):
        load_spec("pcd-digits", {"space.warmup": huge})
    with pytest.raises(SpecError, match=r"space\.stages: value 1000000000000 is not allowed"):
        load_spec("pcd-digits", {"space.stages": {**huge, "low": 1}})
    with pytest.raises(SpecError, match=r"space: a grid of \d+ configurations; at most"):
        load_spec("pcd-digits", {"sampler.type": "grid", "space": {"alpha": fine}})
