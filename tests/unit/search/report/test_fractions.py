"""The report's learning curves and the statement where the ranking of strategies changes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from search.report.fractions import (
    largest_fraction_only,
    learning_curves,
    ranking_changes,
)
from search.shared.metrics import get_metric


def curve_rows() -> pd.DataFrame:
    """Final rows where `small` wins on few images and `big` on many (seeds 0 and 1)."""
    rows = []
    dice = {("small", 0.1): 0.80, ("big", 0.1): 0.70, ("small", 1.0): 0.85, ("big", 1.0): 0.92}
    for (strategy, fraction), mean in dice.items():
        for seed, offset in ((0, -0.01), (1, 0.01)):
            rows.append(
                {
                    "stage": "final",
                    "strategy": strategy,
                    "seed": seed,
                    "train_fraction": fraction,
                    "train_images": 56 + seed if fraction < 1 else 559,
                    "status": "ok",
                    "trainable_params": 1000 if strategy == "small" else 50_000,
                    "test_dice": mean + offset,
                    "test_hc_fail_rate": 1 - mean,
                }
            )
    rows.append({**rows[0], "stage": "tune", "test_dice": np.nan})
    return pd.DataFrame(rows)


def test_learning_curves_and_the_statement_where_the_ranking_changes():
    metric = get_metric("test_dice")
    trials = curve_rows()
    curves = learning_curves(trials, metric)
    assert len(curves) == 4
    few = curves[curves.train_fraction == 0.1].set_index("strategy")
    assert few.loc["small", "rank"] == 1 and few.loc["big", "rank"] == 2
    assert few.loc["small", "test_dice_mean"] == pytest.approx(0.80)
    assert few.loc["small", "test_dice_min"] == pytest.approx(0.79)
    assert few.loc["small", "train_images"] == pytest.approx(56.5)
    assert few.loc["small", "pareto"] and not few.loc["big", "pareto"]  # dominated at 10%
    lines = ranking_changes(curves, metric)
    assert any("`small` leads on Dice" in line and "56 training images" in line for line in lines)
    crossing = [line for line in lines if not line.startswith("With")]
    assert crossing == [
        "Dice: below about 559 images `small` beats `big` (by 10.00 points at 56 images); from "
        "559 images on `big` is ahead."
    ]
    # Seeds whose ranges overlap: the statement says it may be noise.
    close = curves.copy()
    close.loc[close.strategy == "big", "test_dice_max"] = 0.95
    assert ranking_changes(close, metric)[-1].endswith("this may be noise.")
    # The rest of the report ranks the largest share only; other stages' rows are kept.
    kept = largest_fraction_only(trials)
    assert set(kept.loc[kept.stage == "final", "train_fraction"]) == {1.0}
    assert (kept.stage == "tune").sum() == 1
