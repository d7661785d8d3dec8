"""The explore stage's plan: no all-frozen mask is trained, and a rebuilt NSGA-II study breeds
from the earlier generations."""

from __future__ import annotations

import dataclasses
import functools

import optuna

from search.driver.config import load_config
from search.driver.searcher import Past
from search.driver.stages.common import StageRunner
from search.driver.stages.explore import build_plan
from search.experiment.folder import Experiment
from trainables.nets.freeze import PART_ORDER
from trainables.nets.strategies import get_strategy


def test_an_all_frozen_mask_is_never_trained(tmp_path):
    cfg = load_config(None, ["search.explore.trials=5", "search.explore.population=4"])
    runner = StageRunner(cfg, Experiment(str(tmp_path), "x"), "disabled")
    plan = build_plan(runner, "none")
    frozen = {f"train_{part}": False for part in PART_ORDER}
    recipe = {"lr": 1e-3, "lr_schedule": "none"}
    plan.queue.insert(0, {"encoder": "mobilenet_v2", "bn": "update", **frozen, **recipe})
    specs = [plan.propose()[0] for _ in range(5)]
    assert all(get_strategy(spec.trial.strategy).parts for spec in specs)
    failed = [t for t in plan.study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert failed and not any(failed[0].params[f"train_{p}"] for p in PART_ORDER)
    assert plan.proposed == 5  # the refused proposal used no budget


def test_a_rebuilt_nsga2_study_breeds_from_the_earlier_generations(tmp_path):
    cfg = load_config(None, ["search.explore.trials=12", "search.explore.population=4"])
    runner = StageRunner(cfg, Experiment(str(tmp_path), "x"), "disabled")
    first = build_plan(runner, "none")
    past = []
    for i in range(8):
        _spec, trial = first.propose()
        past.append(Past(first.canonical(trial.params), "complete", {"val_dice": 0.5 + i / 100}))
    factory = functools.partial(optuna.samplers.NSGAIISampler, seed=1, population_size=4)
    rebuilt = dataclasses.replace(first, history=past, sampler=factory)
    sampler = rebuilt.study.sampler
    generation = sampler._get_generation_key()
    assert [t.system_attrs[generation] for t in rebuilt.study.trials] == [0] * 4 + [1] * 4
    _spec, trial = rebuilt.propose()
    assert rebuilt.study.trials[trial.number].system_attrs[generation] == 2
    parents = sampler.get_parent_population(rebuilt.study, 2)
    assert parents and {p.number for p in parents} <= set(range(8))
