"""Stage 2: per strategy, an Optuna study (TPE, seeded) proposes the learning-rate recipe; each
proposal is one trial scored on validation Dice, ASHA stops poor ones within their strategy.
The config's own recipe (the paper's) is each study's first proposal.

All strategies' proposals run in ONE Tune experiment (one study per strategy, each with its own
budget): a study per strategy keeps TPE's model of each strategy's learning-rate landscape apart
(a frozen encoder wants another rate than a whole network) and gives every strategy exactly its
budget, and one experiment keeps every GPU busy until the last proposal (one experiment per
strategy idled the cluster at the end of each). Writes the best recipe per strategy.
"""

from __future__ import annotations

import functools

import optuna
import pandas as pd
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from search.driver.config import TuneSettings
from search.driver.live_study import LiveStudies
from search.driver.searcher import Past, StudyPlan, StudySearcher
from search.driver.stages.common import StageRunner
from search.driver.stages.history import stage_history
from search.experiment.folder import Experiment
from search.shared.spec import paper_recipe
from trainables.core.recipe import RECIPE_KEYS, recipe_params, suggest_recipe


class PerGroupASHA(FIFOScheduler):
    """ASHA within each group of trials (here: each strategy), so that a proposal competes only
    with proposals of its own strategy; a whole strategy that scores lower is not stopped."""

    def __init__(self, make_scheduler, group_of):
        super().__init__()
        self.make_scheduler, self.group_of = make_scheduler, group_of
        self.groups: dict[str, ASHAScheduler] = {}
        self.mode = None

    def set_search_properties(self, metric, mode, **spec) -> bool:
        self._metric, self.mode = metric, mode
        return True

    def _scheduler(self, trial) -> ASHAScheduler:
        group = self.group_of(trial)
        if group not in self.groups:
            self.groups[group] = self.make_scheduler()
            self.groups[group].set_search_properties(self._metric, self.mode)
        return self.groups[group]

    def on_trial_add(self, tune_controller, trial):
        self._scheduler(trial).on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result):
        return self._scheduler(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result):
        self._scheduler(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial):
        self._scheduler(trial).on_trial_remove(tune_controller, trial)


def build_scheduler(settings: TuneSettings, epochs: int) -> PerGroupASHA | None:
    if not settings.asha:
        return None
    make = functools.partial(
        ASHAScheduler,
        time_attr="epoch",  # a resumed trial goes on at its epoch, not at 1
        # One report per epoch, then one with the final metrics: a trial that survives every
        # rung must reach that last report.
        max_t=epochs + 1,
        grace_period=settings.grace_period,
    )
    return PerGroupASHA(make, lambda trial: trial.config["spec"]["trial"]["strategy"])


def recorded_recipe(row: dict) -> dict:
    """The recipe keys a trials.csv row records (NaN: not recorded)."""
    return {k: row[k] for k in RECIPE_KEYS if not pd.isna(row.get(k))}


def history(experiment: Experiment, strategy: str) -> list[Past]:
    """The tune trials of `strategy` that earlier runs of the stage started, from the trials
    table (how each ended) and the result files (the scores of finished ones)."""
    return stage_history(experiment, "tune", recorded_recipe, strategy)


def build_plans(runner: StageRunner, encoder_weights: str) -> list[StudyPlan]:
    """One study per strategy, rebuilt from the experiment's earlier trials of the stage."""
    settings = runner.cfg.search.tune
    # Define-by-run: the decay parameters exist only for the schedules that use them.
    space = functools.partial(suggest_recipe, ranges=settings.model_dump())
    plans = []
    for strategy in runner.cfg.search.strategies:
        spec = runner.spec(
            "tune", strategy=strategy, seed=settings.trial_seed, encoder_weights=encoder_weights
        )
        plans.append(
            StudyPlan(
                key=f"tune_{strategy}",
                space=space,
                make_spec=spec.with_proposal,
                canonical=recipe_params,
                budget=settings.trials_per_strategy,
                sampler=functools.partial(optuna.samplers.TPESampler, seed=settings.seed),
                first=[paper_recipe(spec.trial)],
                history=history(runner.experiment, strategy),
            )
        )
    return plans


def run(runner: StageRunner, encoder_weights: str) -> dict[str, dict]:
    """Tune every strategy up to its budget; return (and store) the best recipe per strategy."""
    settings, experiment = runner.cfg.search.tune, runner.experiment
    strategies = runner.cfg.search.strategies
    plans = build_plans(runner, encoder_weights)
    studies = LiveStudies.start(
        runner.cfg.search.optuna_storage, experiment, "tune", plans, ["val_dice"]
    )
    if any(plan.remaining for plan in plans):
        searcher = StudySearcher(plans, "val_dice", "max", runner.budget, live=studies)
        runner.fit(
            "tune",
            {},
            settings.trials_per_strategy * len(strategies),
            search_alg=runner.searcher(searcher),
            scheduler=build_scheduler(settings, runner.base_trial.epochs),
            metric="val_dice",
            mode="max",
            num_samples=-1,  # until every study's budget is spent
        )
    studies.write_copy(experiment, "tune")
    best = write_best_recipes(experiment)
    untuned = [s for s in strategies if s not in best]
    if untuned and runner.budget is not None and runner.budget.exhausted():
        print(
            f"[budget] the budget left no finished tune proposal for {', '.join(untuned)}: "
            "the final stage trains them with the config's own recipe",
            flush=True,
        )
    return best


def write_best_recipes(experiment: Experiment) -> dict[str, dict]:
    """The best recipe per strategy on validation Dice, written to the experiment."""
    best: dict[str, dict] = {}
    for result in experiment.results("tune"):
        strategy, config = result["strategy"], result["config"]
        score = result["val"].get("dice", float("-inf"))
        if strategy not in best or score > best[strategy]["val_dice"]:
            best[strategy] = {k: config[k] for k in RECIPE_KEYS} | {"val_dice": score}
    experiment.write_best_recipes(best)
    return best
