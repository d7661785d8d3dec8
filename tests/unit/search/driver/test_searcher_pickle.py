"""The tune and explore stages' searchers survive Ray's pickling, whatever the Optuna release.

Ray Tune pickles the search algorithm when a `Tuner` is made (tuner.pkl). Optuna 5's genetic
samplers (NSGA-II) hold a `threading.Lock`, which does not pickle: the explore stage died there
with Optuna 5.1. Both stages' plans now carry a sampler factory and rebuild the sampler after
unpickling (`StudyPlan.__getstate__`).
"""

from __future__ import annotations

import pickle

import optuna
import pytest
from ray.tune.search import ConcurrencyLimiter

from search.driver.config import load_config
from search.driver.searcher import StudySearcher
from search.driver.stages import explore, tune
from search.driver.stages.common import StageRunner
from search.experiment.folder import Experiment

SETS = {
    "tune": ["search.tune.trials_per_strategy=4", "search.strategies=[decoder,encoder]"],
    # NSGA-II (not the default TPE): Optuna 5's genetic samplers are the ones that do not pickle.
    "explore": [
        "search.explore.trials=8",
        "search.explore.population=4",
        "search.explore.sampler=nsga2",
    ],
}


def plans_of(stage: str, tmp_path):
    runner = StageRunner(load_config(None, SETS[stage]), Experiment(str(tmp_path), "x"), "disabled")
    if stage == "tune":
        return tune.build_plans(runner, "none")
    return [explore.build_plan(runner, "none")]


def test_a_genetic_sampler_of_this_optuna_does_not_pickle_or_pickles():
    """Documents which case this environment is in (both must work)."""
    sampler = optuna.samplers.NSGAIISampler(seed=0)
    try:
        pickle.dumps(sampler)
    except TypeError as error:
        assert "lock" in str(error)  # Optuna 5: the reason the plans carry a factory


@pytest.mark.parametrize("stage", ["tune", "explore"])
def test_a_searcher_pickles_mid_study_and_goes_on_where_it_was(stage, tmp_path):
    searcher = StudySearcher(plans_of(stage, tmp_path), metric="val_dice", mode="max")
    limiter = ConcurrencyLimiter(searcher, max_concurrent=4)
    suggested = [searcher.suggest(f"t{i}") for i in range(3)]
    searcher.on_trial_complete("t0", {"val_dice": 0.7})

    copy = pickle.loads(pickle.dumps(limiter)).searcher  # what Tuner() does to it
    original_types = [type(p.study.sampler) for p in searcher.plans]
    assert [type(p.study.sampler) for p in copy.plans] == original_types
    assert [len(p.study.trials) for p in copy.plans] == [
        len(p.study.trials) for p in searcher.plans
    ]
    assert sorted(copy.running) == ["t1", "t2"]
    # The unpickled searcher records the running trials' results and proposes new ones.
    copy.on_trial_complete("t1", {"val_dice": 0.8})
    copy.on_trial_complete("t2", error=True)
    states = [t.state for p in copy.plans for t in p.study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 2
    fresh = copy.suggest("t3")
    assert fresh not in suggested and fresh is not StudySearcher.FINISHED


def test_nsga2_with_its_parents_cached_proposes_exactly_what_optuna_proposes():
    """`with_parent_cache` changes how long a proposal takes, not which: the same seeded study
    (failed trials included) proposes the same parameters, and the study is scanned for a
    generation's parents once instead of at every proposal."""
    from search.driver.searcher import with_parent_cache

    def proposals(cache: bool) -> tuple[list, int]:
        sampler = optuna.samplers.NSGAIISampler(seed=3, population_size=6)
        scans = []
        lookup = sampler.get_parent_population
        sampler.get_parent_population = lambda *a: scans.append(a[1]) or lookup(*a)
        if cache:
            sampler = with_parent_cache(sampler)
        study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
        out = []
        for number in range(150):
            trial = study.ask()
            x, kind = trial.suggest_float("x", 0, 1), trial.suggest_categorical("k", list("abc"))
            if number % 7 == 3:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                study.tell(trial, [x + (kind == "a"), x * x])
            out.append((x, kind))
        return out, len(scans)

    (cached, cached_scans), (plain, plain_scans) = proposals(True), proposals(False)
    assert cached == plain
    generations = 150 // 6 + 1
    # Optuna: at every proposal (and once more per generation, choosing its parents); cached:
    # at most twice per generation (chosen, then its own look-up when the next is chosen).
    assert plain_scans >= 150 and cached_scans <= 2 * generations


def test_only_a_genetic_sampler_is_given_the_parent_cache():
    from search.driver.searcher import with_parent_cache

    tpe = optuna.samplers.TPESampler(seed=0)
    assert "get_parent_population" not in vars(with_parent_cache(tpe))
    nsga = with_parent_cache(optuna.samplers.NSGAIISampler(seed=0))
    assert "get_parent_population" in vars(nsga)
