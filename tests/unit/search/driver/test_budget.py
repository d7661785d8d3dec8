"""`search.budget`: the tune and explore stages stop proposing once the wall clock or the
device-hours are spent, and each stage says so once."""

from __future__ import annotations

import time

import pandas as pd
from helpers import trial_rows as rows

from search.driver.budget import SPENT_EVERY_S, Budget, BudgetSettings
from search.experiment.folder import Experiment


def test_budget_is_spent_by_the_clock_or_by_the_experiments_device_hours(tmp_path):
    experiment = Experiment(str(tmp_path), "b")
    experiment.store.write_text("config.yaml", "{}")
    now = time.time()
    trials = rows().assign(started=[now - 7200, now - 3600, now - 3600, now - 60])
    trials["ended"] = [now - 3600, None, now, now]
    experiment.write_trials(trials)
    resources = {"cpu": 1, "gpu": 1}
    assert Budget.start(BudgetSettings(), experiment, resources) is None  # no limit set
    hours = Budget.start(BudgetSettings(device_hours=4), experiment, resources)
    assert hours.exhausted() is None  # 1 + 1 + 1 + 1/60 h so far
    hours.device_hours = 3
    assert "of 3 GPU-hours (search.budget.device_hours) are spent" in hours.exhausted()
    clock = Budget.start(BudgetSettings(wall_clock_min=0.01), experiment, resources)
    assert clock.exhausted() is None
    time.sleep(0.7)
    assert "wall-clock budget" in clock.exhausted()


def test_device_hours_are_read_at_most_every_few_seconds_however_often_proposals_ask(
    tmp_path, monkeypatch
):
    experiment = Experiment(str(tmp_path), "b")
    experiment.store.write_text("config.yaml", "{}")
    now = time.time()
    experiment.write_trials(rows().assign(started=now - 3600, ended=now))  # 4 GPU-hours
    reads = []
    read_trials = Experiment.read_trials
    monkeypatch.setattr(
        Experiment, "read_trials", lambda self: reads.append(1) or read_trials(self)
    )
    budget = Budget.start(BudgetSettings(device_hours=6), experiment, {"cpu": 1, "gpu": 1})
    for _ in range(100):  # a burst of proposals
        assert budget.exhausted() is None
    assert len(reads) == 1
    twice = pd.concat([rows(), rows()], ignore_index=True)
    experiment.write_trials(twice.assign(started=now - 3600, ended=now))  # 8 GPU-hours now
    assert budget.exhausted() is None  # read less than SPENT_EVERY_S ago: not yet seen
    budget.spent_read = (budget.spent_read[0] - SPENT_EVERY_S, budget.spent_read[1])
    assert "8.000 of 6 GPU-hours" in budget.exhausted()
    assert len(reads) == 2


def test_each_stage_says_once_that_it_stopped_for_the_budget(capsys, tmp_path):
    budget = Budget(str(tmp_path), "b", {"cpu": 1, "gpu": 0}, deadline=0.0)
    why = budget.exhausted()
    for stage in ("tune", "tune", "explore"):
        budget.announce(why, stage, 3, 10)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(":")[0] for line in lines] == ["[budget] tune", "[budget] explore"]
    assert "no more proposals after 3 of 10" in lines[0]
