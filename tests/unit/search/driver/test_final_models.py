"""Which final trial's checkpoint becomes a strategy's W&B model artifact
(`search.wandb.log_checkpoints`): the best seed by validation Dice, on the whole training set."""

from __future__ import annotations

from types import SimpleNamespace

from search.driver.stages.final import best_per_strategy
from search.experiment.folder import Experiment


def test_the_best_seed_by_validation_dice_on_the_largest_share_stands_for_its_strategy(tmp_path):
    experiment = Experiment(str(tmp_path), "exp")
    trials = [  # (strategy, seed, train fraction, validation Dice)
        ("decoder", 0, 1.0, 0.70),
        ("decoder", 1, 1.0, 0.80),
        ("decoder", 2, 1.0, 0.80),  # ties with seed 1: the lower seed stands
        ("decoder", 3, 0.5, 0.95),  # a smaller share of the training set: not compared
        ("encoder", 0, 1.0, 0.60),
    ]
    for strategy, seed, fraction, dice in trials:
        name = f"{strategy}__f{fraction:g}__seed{seed}"
        result = {"trial_name": name, "strategy": strategy, "seed": seed, "val": {"dice": dice}}
        experiment.write_result("final", name, result | {"train_fraction": fraction})
    search = SimpleNamespace(train_fractions=[0.5, 1.0])
    runner = SimpleNamespace(cfg=SimpleNamespace(search=search), experiment=experiment)
    chosen = best_per_strategy(runner)
    assert [(r["strategy"], r["seed"]) for r in chosen] == [("decoder", 1), ("encoder", 0)]
