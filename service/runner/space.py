"""From a validated StudySpec to Optuna: a define-by-run space (conditionals included) and
the seeded sampler."""

from __future__ import annotations

from typing import Any

import optuna

from search_spaces.schema import (
    CategoricalParam,
    FixedParam,
    FloatParam,
    IntParam,
    StudySpec,
)


class DefineByRun:
    """The space as an Optuna define-by-run function (picklable: the searcher's state is
    saved with the experiment). A parameter with ``when`` is sampled only when the parameters
    it names (listed before it) have those values; fixed values are returned as constants."""

    def __init__(self, spec: StudySpec) -> None:
        self.spec_json = spec.model_dump(mode="json")

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        spec = StudySpec.model_validate(self.spec_json)
        chosen: dict[str, Any] = {}
        constants: dict[str, Any] = {}
        for name, p in spec.space.items():
            if p.when and any(chosen.get(k) != v for k, v in p.when.items()):
                continue
            if isinstance(p, FixedParam):
                chosen[name] = constants[name] = p.value
            elif isinstance(p, FloatParam):
                chosen[name] = trial.suggest_float(name, p.low, p.high, log=p.log, step=p.step)
            elif isinstance(p, IntParam):
                chosen[name] = trial.suggest_int(name, p.low, p.high, step=p.step, log=p.log)
            elif isinstance(p, CategoricalParam):
                chosen[name] = trial.suggest_categorical(name, p.choices)
        return constants


def define_by_run(spec: StudySpec) -> DefineByRun:
    return DefineByRun(spec)


def make_sampler(spec: StudySpec) -> optuna.samplers.BaseSampler:
    """The spec's sampler, seeded with the study seed."""
    kind, seed = spec.sampler.type, spec.seed
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if kind == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    grid = {name: p.values() for name, p in spec.space.items() if not isinstance(p, FixedParam)}
    return optuna.samplers.GridSampler(grid, seed=seed)
