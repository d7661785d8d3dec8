"""Stage 2: per strategy, Optuna (TPE, seeded) proposes the learning-rate recipe; each proposal
is one trial scored on validation Dice, and ASHA stops poor ones. The config's own recipe (the
paper's) is always the first proposal. Writes the best recipe per strategy."""

from __future__ import annotations

import collections
import functools

import optuna
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from search.config import TuneSettings
from search.experiment import Experiment
from search.spec import RECIPE_KEYS, paper_recipe
from search.stages.common import StageRunner
from trainables.config import TrialConfig


def optuna_space(trial, settings: dict) -> None:
    """Define-by-run space: the decay parameters exist only for the schedules that use them."""
    trial.suggest_float("lr", settings["lr_min"], settings["lr_max"], log=True)
    schedule = trial.suggest_categorical("lr_schedule", settings["schedules"])
    if schedule in ("exponential", "step"):
        trial.suggest_float("lr_gamma", settings["gamma_min"], settings["gamma_max"])
    if schedule == "step":
        trial.suggest_int("lr_step_size", 1, settings["step_size_max"])


def build_searcher(
    settings: TuneSettings, trial: TrialConfig, experiment: Experiment, strategy: str, limit
):
    """One seeded TPE study per strategy in the experiment's Optuna storage."""
    searcher = OptunaSearch(
        space=functools.partial(optuna_space, settings=settings.model_dump()),
        metric="val_dice",
        mode="max",
        points_to_evaluate=[paper_recipe(trial)],
        sampler=optuna.samplers.TPESampler(seed=settings.seed),
        storage=optuna.storages.RDBStorage(experiment.study_storage_url()),
        study_name=f"tune_{strategy}",
    )
    return ConcurrencyLimiter(searcher, limit) if limit else searcher


def build_scheduler(settings: TuneSettings, epochs: int) -> ASHAScheduler | None:
    if not settings.asha:
        return None
    return ASHAScheduler(
        time_attr="training_iteration",
        # One report per epoch, then one with the final metrics: a trial that survives every
        # rung must reach that last report.
        max_t=epochs + 1,
        grace_period=settings.grace_period,
    )


def run(runner: StageRunner, encoder_weights: str) -> dict[str, dict]:
    """Tune every strategy that has fewer than its budget of results; return the best recipes."""
    settings, experiment = runner.cfg.search.tune, runner.experiment
    strategies = runner.cfg.search.strategies
    done = collections.Counter(r["strategy"] for r in experiment.results("tune"))
    for strategy in strategies:
        if done[strategy] >= settings.trials_per_strategy:
            continue
        spec = runner.spec(
            "tune", strategy=strategy, seed=settings.trial_seed, encoder_weights=encoder_weights
        )
        runner.fit(
            f"tune_{strategy}",
            "tune",
            {"spec": spec.to_param()},
            # The stage's progress counts the tune trials of every strategy.
            settings.trials_per_strategy * len(strategies),
            search_alg=build_searcher(
                settings, spec.trial, experiment, strategy, runner.cfg.search.max_concurrent_trials
            ),
            scheduler=build_scheduler(settings, spec.trial.epochs),
            metric="val_dice",
            mode="max",
            num_samples=settings.trials_per_strategy,
        )
    return write_best_recipes(experiment)


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
