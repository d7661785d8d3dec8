"""The tune stage's parameter importance (PED-ANOVA on an in-memory Optuna study of the tune rows).

Planted: decoder's 30 tune trials score a validation Dice set by lr alone (a peak at lr 1e-3,
0.05 lower per decade squared away from it); the schedule and its decay keys are drawn at random
and do nothing. encoder has 6 complete trials (and 2 failed ones): too few.
"""

from __future__ import annotations

import math

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from search.report import build_report
from search.report import tune as report_tune

SCHEDULES = ["none", "exponential", "step", "cosine"]
RANGES = {"lr_min": 1e-5, "lr_max": 1e-2, "schedules": SCHEDULES, "gamma_min": 0.5}
RANGES |= {"gamma_max": 0.99, "step_size_max": 10}


def tune_rows(strategy: str, trials: int, seed: int, failed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(trials + failed):
        lr = float(10 ** rng.uniform(-5, -2))
        schedule = str(rng.choice(SCHEDULES))
        rows.append(
            {
                "stage": "tune",
                "strategy": strategy,
                "seed": 0,
                "trial_name": f"{strategy}__seed0__{k:02d}",
                "status": "failed" if k >= trials else "ok",
                "val_dice": math.nan if k >= trials else 0.95 - 0.05 * (math.log10(lr) + 3) ** 2,
                "epochs": 3,
                "lr": lr,
                "lr_schedule": schedule,
                # the trial config records gamma for every schedule; only two read it
                "lr_gamma": float(rng.uniform(0.5, 0.99)),
                "lr_step_size": int(rng.integers(1, 11)) if schedule == "step" else math.nan,
                "lr_min": 0.0 if schedule == "cosine" else math.nan,
                "recipe": "paper" if k == 0 else "tuned",
            }
        )
    return rows


def planted() -> pd.DataFrame:
    return pd.DataFrame(tune_rows("decoder", 30, seed=1) + tune_rows("encoder", 6, 2, failed=2))


def test_lr_alone_driving_val_dice_ranks_lr_first():
    found = report_tune.importances(planted(), {"search": {"tune": RANGES}}, ["decoder"])
    decoder = found.set_index("strategy").loc["decoder"]
    assert decoder["trials"] == 30
    shares = {key: decoder[key] for key in report_tune.PARAMS if not pd.isna(decoder[key])}
    assert max(shares, key=shares.get) == "lr", shares
    assert decoder["lr"] > 0.8 and decoder["lr"] + decoder["lr_schedule"] == pytest.approx(1.0)
    assert decoder["lr_above_chance"]  # more than any of 19 shuffles of the scores gives
    # lr_gamma is evaluated over the exponential and step trials only (>= 10 of the 30 here).
    assert decoder["lr_gamma_trials"] >= report_tune.MIN_TRIALS
    assert decoder["lr_gamma"] < 0.5


def test_scores_driven_by_the_schedule_or_by_nothing_do_not_make_lr_matter():
    # The same trials scored by their schedule: only the schedule is above chance. Over 30
    # trials PED-ANOVA still gives lr half the share (its density over a few top trials is
    # never flat): the shuffled scores are what tell the two apart.
    trials = planted()
    trials["val_dice"] = trials["lr_schedule"].map({"none": 0.7, "exponential": 0.9}).fillna(0.8)
    found = report_tune.importances(trials, {}, ["decoder"]).set_index("strategy")
    assert found.loc["decoder", "lr_schedule_above_chance"]
    assert not found.loc["decoder", "lr_above_chance"]
    trials["val_dice"] = np.random.default_rng(0).uniform(0.8, 0.9, len(trials))
    found = report_tune.importances(trials, {}, ["decoder"]).set_index("strategy")
    assert not found.loc["decoder", ["lr_above_chance", "lr_schedule_above_chance"]].any()
    shown = report_tune.importance_display(found.reset_index()).set_index("Strategy")
    assert shown.loc["decoder", "lr"].endswith(" (chance)")


def test_too_few_trials_give_the_stated_message_not_a_number():
    found = report_tune.importances(planted(), {}, ["decoder", "encoder"]).set_index("strategy")
    encoder = found.loc["encoder"]
    assert encoder["trials"] == 6  # the failed ones do not count
    assert encoder[list(report_tune.PARAMS)].isna().all()
    assert encoder["note"] == "too few complete tune trials for importance (6; at least 10)"
    shown = report_tune.importance_display(found.reset_index()).set_index("Strategy")
    assert shown.loc["encoder", "lr"] == "-"
    assert shown.loc["encoder", "Note"] == encoder["note"]


def test_the_report_shows_the_table_and_the_bar_chart(tmp_path):
    exp = tmp_path / "exp"
    exp.mkdir()
    final = [
        {
            "stage": "final",
            "strategy": name,
            "seed": 0,
            "trial_name": f"{name}__seed0",
            "status": "ok",
            "trainable_params": params,
            "total_params": 6_628_945,
            "epochs": 3,
            "wall_s": 60.0,
            "test_dice": dice,
            "recipe": "tuned",
        }
        for name, params, dice in (("decoder", 4_404_928, 0.96), ("encoder", 2_223_872, 0.9))
    ]
    pd.concat([planted(), pd.DataFrame(final)]).to_csv(exp / "trials.csv", index=False)
    out = tmp_path / "out"
    build_report(str(exp), out_dir=str(out))
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "PED-ANOVA importances" in md
    assert "| encoder | 6 | - | - |" in md and "(6; at least 10)" in md
    assert "![Parameter importance per strategy](importance.png)" in md
    image = matplotlib.image.imread(out / report_tune.IMPORTANCE_PNG)
    assert image.shape[1] == 1400  # 7 in at 200 dpi; one panel: only decoder has enough
    html = (out / "report.html").read_text(encoding="utf-8")
    assert 'alt="Parameter importance per strategy"' in html
