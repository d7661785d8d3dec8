"""The trials a search stage's earlier runs started, as its Optuna studies rebuild them on resume.

One rule for the tune and explore stages, the one the live searcher applies
(`search.driver.searcher.StudySearcher.on_trial_complete`): a trial that ended, with a result
file or stopped early by ASHA, is complete with its validation Dice (the result's, else the
last one it reported) and failed without a usable one; a failed trial is failed; any other
(running, pending or interrupted when the driver stopped) is proposed again and resumes from
its checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from search.driver.searcher import Past
from search.experiment.folder import Experiment


def stage_history(
    experiment: Experiment,
    stage: str,
    params_of: Callable[[dict], dict],
    strategy: str | None = None,
) -> list[Past]:
    """The trials of `stage` (of `strategy` only, when given) that earlier runs started.

    Args:
        params_of: a trials.csv row's proposal, as the stage's study proposed it.
    """
    rows = experiment.read_trials()
    if rows.empty:
        return []
    rows = rows[rows["stage"] == stage]
    if strategy is not None:
        rows = rows[rows["strategy"] == strategy]
    scores = {r["trial_name"]: r["val"].get("dice") for r in experiment.results(stage)}
    past = []
    for row in rows.to_dict("records"):
        name, status = row["trial_name"], row["status"]
        if name in scores or status == "stopped_early":  # ended: scored, or failed without
            dice = scores.get(name, row.get("val_dice"))
            scored = dice is not None and not pd.isna(dice)  # Optuna refuses a NaN value
            ending = ("complete", {"val_dice": float(dice)}) if scored else ("failed", None)
        else:  # running, pending or interrupted: proposed again, it resumes
            ending = ("failed" if status == "failed" else "unfinished", None)
        past.append(Past(params_of(row), *ending))
    return past
