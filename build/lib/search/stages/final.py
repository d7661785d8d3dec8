"""Stage 3: strategies x seeds, each with its strategy's best recipe from the tune stage (the
config's own recipe where there is none), chosen on validation and tested once."""

from __future__ import annotations

from ray import tune

from search.spec import RECIPE_KEYS
from search.stages.common import StageRunner


def run(runner: StageRunner, encoder_weights: str, recipes: dict[str, dict]) -> None:
    """Train and test the grid.

    Args:
        encoder_weights: 'imagenet', 'none', a checkpoint, or the pretrain stage's model.
        recipes: the tune stage's best recipe per strategy (`best_recipes.yaml`).
    """
    search = runner.cfg.search
    specs = []
    for strategy in search.strategies:
        recipe = recipes.get(strategy)
        updates = {k: recipe[k] for k in RECIPE_KEYS} if recipe else {}
        specs += [
            runner.spec(
                "final",
                recipe="best" if recipe else "paper",
                keep_best_checkpoint=search.keep_best_checkpoints,
                strategy=strategy,
                seed=seed,
                encoder_weights=encoder_weights,
                **updates,
            )
            for seed in search.seeds
        ]
    space = {"spec": tune.grid_search([spec.to_param() for spec in specs])}
    runner.fit(
        "final", "final", space, len(specs), max_concurrent_trials=search.max_concurrent_trials
    )
