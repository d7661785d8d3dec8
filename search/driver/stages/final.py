"""The final stage: strategies x seeds (x training-set shares, `search.train_fractions`), each
with its strategy's best recipe from the tune stage (the config's own recipe where there is
none), chosen on validation and tested once; the
explore stage's top configurations join the named strategies with their own recipe and
BatchNorm mode, so the report compares them on the test set. Each share of the training split
is a trial of its own (`decoder__f10__seed0`); validation and test are the same for all.
"""

from __future__ import annotations

from ray import tune

from search.driver.stages.common import StageRunner
from search.worker.files import stored_result
from trainables.core.recipe import RECIPE_KEYS
from trainables.nets.strategies import get_strategy


def run(
    runner: StageRunner,
    encoder_weights: str,
    recipes: dict[str, dict],
    discovered: list[dict] | None = None,
) -> None:
    """Train and test the grid.

    Args:
        encoder_weights: 'imagenet', 'none', a checkpoint, or the pretrain stage's model.
        recipes: the tune stage's best recipe per strategy (`best_recipes.yaml`).
        discovered: the explore stage's top configurations (`explore_top.yaml`).
    """
    search = runner.cfg.search
    cells = []  # (strategy, recipe label, trial settings)
    for strategy in search.strategies:
        recipe = recipes.get(strategy)
        updates = {k: recipe[k] for k in RECIPE_KEYS} if recipe else {}
        cells.append((strategy, "best" if recipe else "paper", updates))
    named = {get_strategy(s).mask for s in search.strategies}  # a found mask may be a row's
    for found in discovered or []:
        mask = get_strategy(found["strategy"]).mask
        if mask not in named:  # this study's explore stage and search.final_configs may agree
            named.add(mask)
            updates = {k: found[k] for k in (*RECIPE_KEYS, "bn_update_frozen")}
            cells.append((found["strategy"], "explore", updates))
    specs = [
        runner.spec(
            "final",
            recipe=label,
            keep_best_checkpoint=search.keep_best_checkpoints,
            strategy=strategy,
            seed=seed,
            encoder_weights=encoder_weights,
            train_fraction=fraction,
            fraction_budget=search.fraction_budget,
            **updates,
        )
        for fraction in sorted(search.train_fractions, reverse=True)  # the whole set first
        for strategy, label, updates in cells
        for seed in search.seeds
    ]
    # A resumed study trains only what is not finished (an interrupted trial continues from its
    # checkpoint); finished trials keep their rows in trials.csv.
    todo = [spec for spec in specs if stored_result(runner.experiment, spec, refuse=True) is None]
    if todo:
        space = {"spec": tune.grid_search([spec.to_param() for spec in todo])}
        runner.fit("final", space, len(specs), max_concurrent_trials=search.max_concurrent_trials)


def best_per_strategy(runner: StageRunner) -> list[dict]:
    """The stored result of each strategy's best final trial on the largest training share: the
    highest validation Dice (ties: the lower seed), as the checkpoint a user would deploy."""
    largest = max(runner.cfg.search.train_fractions)
    best: dict[str, dict] = {}
    for result in runner.experiment.results("final"):
        if result.get("train_fraction", 1.0) != largest or "trial_name" not in result:
            continue
        key = (result.get("val", {}).get("dice", float("-inf")), -result["seed"])
        held = best.get(result["strategy"])
        if held is None or key > (held.get("val", {}).get("dice", float("-inf")), -held["seed"]):
            best[result["strategy"]] = result
    return [best[strategy] for strategy in sorted(best)]
