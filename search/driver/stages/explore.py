"""Stage `explore` (between tune and final): which layers to train, on which encoder, with which
recipe, for the best validation Dice at each parameter budget.

ONE Optuna multi-objective study (multi-objective TPE by default, seeded; NSGA-II or random search
as options: README "Search efficiency" measured them) proposes, per trial: the encoder
(`search.explore.encoders`), a freeze mask (one flag per encoder stage, decoder block and the head;
an all-frozen mask is never trained), the frozen BatchNorm mode and the learning-rate recipe (the
tune stage's space). Objectives: validation Dice (max) and trainable parameters (min), total
parameters optionally (min). All proposals run in ONE Tune experiment (with `search.explore.asha`,
ASHA stops poor ones on validation Dice). The study's front on validation decides which
configurations the final stage tests beside the named strategies (`search.explore.top_k`, written to
the experiment).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import optuna
import pandas as pd
from ray.tune.schedulers import ASHAScheduler

from search.driver.config import ExploreSettings
from search.driver.live_study import LiveStudies
from search.driver.searcher import Past, StudyPlan, StudySearcher
from search.driver.stages.common import StageRunner
from search.driver.stages.history import stage_history
from search.driver.stages.tune import recorded_recipe
from search.experiment.folder import Experiment
from search.shared.pareto import non_dominated
from search.shared.spec import TrialSpec, recipe_digest
from trainables.core.recipe import RECIPE_KEYS, recipe_params, suggest_recipe
from trainables.nets.freeze import PART_ORDER, mask_name, safe_name
from trainables.nets.strategies import get_strategy

BN = {"update": True, "pinned": False}


def explore_space(trial, settings: dict, tune: dict) -> bool:
    """Define-by-run: encoder, one flag per part, BatchNorm mode, recipe; False = all frozen."""
    trial.suggest_categorical("encoder", settings["encoders"])
    flags = [trial.suggest_categorical(f"train_{part}", [True, False]) for part in PART_ORDER]
    trial.suggest_categorical("bn", settings["bn_modes"])
    suggest_recipe(trial, tune)
    return any(flags)


def canonical(params: dict) -> dict:
    """A proposal as compared and named: its mask as flags, BatchNorm mode and recipe."""
    out = {"encoder": params["encoder"], "bn": params["bn"]}
    out |= {f"train_{part}": bool(params[f"train_{part}"]) for part in PART_ORDER}
    return out | recipe_params(params)


def proposal_of(row: dict) -> dict:
    """The proposal behind a trials.csv row (its strategy is the mask name)."""
    strategy = get_strategy(row["strategy"])
    params = {"encoder": strategy.network, "bn": "update" if row["bn_update_frozen"] else "pinned"}
    params |= {f"train_{part}": part in strategy.parts for part in PART_ORDER}
    return params | recorded_recipe(row)


def make_spec(
    runner: StageRunner, settings: ExploreSettings, encoder_weights: str, params: dict
) -> TrialSpec:
    parts = [part for part in PART_ORDER if params[f"train_{part}"]]
    mask = mask_name(params["encoder"], parts)
    recipe = recipe_params(params)
    spec = runner.spec(
        "explore",
        recipe="explore",
        strategy=mask,
        seed=settings.trial_seed,
        bn_update_frozen=BN[params["bn"]],
        encoder_weights=encoder_weights,
        epochs=settings.epochs or runner.base_trial.epochs,
        **recipe,
    )
    digest = recipe_digest({**recipe, "bn": params["bn"]})
    return spec.model_copy(update={"name": f"{safe_name(mask)}__seed{spec.trial.seed}__{digest}"})


def objectives(settings: ExploreSettings, spec: TrialSpec, result: dict | None) -> list | None:
    """The study's objective values of a finished (or stopped) trial."""
    dice = (result or {}).get("val_dice")
    if dice is None:
        return None
    trainable, total = get_strategy(spec.trial.strategy).counts(spec.trial.train_head)
    known = {"val_dice": dice, "trainable_params": trainable, "total_params": total}
    return [known[name] for name in settings.objectives]


def history(experiment: Experiment) -> list[Past]:
    """The explore trials earlier runs started (a resume rebuilds the study from them)."""
    return stage_history(experiment, "explore", proposal_of)


def sampler(settings: ExploreSettings) -> Callable[[], optuna.samplers.BaseSampler]:
    """The explore study's sampler, as the picklable factory a `StudyPlan` takes."""
    if settings.sampler == "random":
        return functools.partial(optuna.samplers.RandomSampler, seed=settings.seed)
    if settings.sampler == "tpe":
        return functools.partial(optuna.samplers.TPESampler, seed=settings.seed, multivariate=True)
    return functools.partial(
        optuna.samplers.NSGAIISampler, seed=settings.seed, population_size=settings.population
    )


def build_plan(runner: StageRunner, encoder_weights: str) -> StudyPlan:
    settings = runner.cfg.search.explore
    directions = ["maximize" if name == "val_dice" else "minimize" for name in settings.objectives]
    plan = StudyPlan(
        key="explore",
        space=functools.partial(
            explore_space,
            settings=settings.model_dump(),
            tune=runner.cfg.search.tune.model_dump(),
        ),
        make_spec=functools.partial(make_spec, runner, settings, encoder_weights),
        canonical=canonical,
        budget=settings.trials,
        sampler=sampler(settings),
        directions=tuple(directions),
        objectives=functools.partial(objectives, settings),
        history=history(runner.experiment),
    )
    return plan


def run(runner: StageRunner, encoder_weights: str) -> list[dict]:
    """Explore up to the budget; return (and store) the configurations the final stage tests."""
    settings = runner.cfg.search.explore
    epochs = settings.epochs or runner.base_trial.epochs
    plan = build_plan(runner, encoder_weights)
    studies = LiveStudies.start(
        runner.cfg.search.optuna_storage, runner.experiment, "explore", [plan], settings.objectives
    )
    if plan.remaining:
        scheduler = None
        if settings.asha:
            scheduler = ASHAScheduler(
                time_attr="epoch",  # a resumed trial goes on at its epoch, not at 1
                # The epochs, then the final report.
                max_t=epochs + 1,
                grace_period=settings.grace_period,
            )
        runner.fit(
            "explore",
            {},
            settings.trials,
            epochs=epochs,
            search_alg=runner.searcher(
                StudySearcher([plan], "val_dice", "max", runner.budget, live=studies)
            ),
            scheduler=scheduler,
            metric="val_dice",
            mode="max",
            num_samples=-1,
        )
    studies.write_copy(runner.experiment, "explore")
    return write_top(runner.experiment, settings)


def explore_table(experiment: Experiment) -> pd.DataFrame:
    """Every finished explore trial: mask, encoder, BatchNorm, recipe, val Dice, parameters,
    and whether it is on the validation front (Dice max, trainable parameters min)."""
    rows = []
    for result in experiment.results("explore"):
        strategy = get_strategy(result["strategy"])
        config = result["config"]
        rows.append(
            {
                "strategy": strategy.name,
                "encoder": strategy.network,
                "bn_update_frozen": config["bn_update_frozen"],
                **{k: config[k] for k in RECIPE_KEYS},
                "val_dice": result["val"].get("dice"),
                "trainable_params": result["trainable_params"],
                "total_params": result["total_params"],
            }
        )
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["on_front"] = non_dominated(table["val_dice"], table["trainable_params"])
    return table.sort_values(["on_front", "val_dice"], ascending=[False, False], kind="stable")


def write_top(experiment: Experiment, settings: ExploreSettings) -> list[dict]:
    """The top-k front configurations by validation Dice (each one's own recipe and BatchNorm
    mode), stored for the final stage and the report."""
    table = explore_table(experiment)
    front = table[table["on_front"]] if len(table) else table
    # One configuration per mask (a tie on the front), best by validation first.
    top = front.drop_duplicates("strategy").head(settings.top_k) if len(front) else front
    chosen = [
        {
            "strategy": row["strategy"],
            "bn_update_frozen": bool(row["bn_update_frozen"]),
            **{k: row[k] for k in RECIPE_KEYS},
            "val_dice": float(row["val_dice"]),
            "trainable_params": int(row["trainable_params"]),
        }
        for row in (top.to_dict("records") if len(top) else [])
    ]
    experiment.write_explore_top(chosen)
    return chosen
