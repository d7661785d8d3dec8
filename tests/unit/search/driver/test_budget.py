"""`search.budget`: the tune and explore stages stop proposing once the wall clock or the
device-hours are spent, the final stage still runs, and the report says what each stage and
strategy cost."""

from __future__ import annotations

import time

import pandas as pd
import pytest
from helpers import TINY

from search.driver.budget import Budget, BudgetSettings
from search.experiment.folder import Experiment
from search.report.compute import compute_tables
from search.shared.compute import trial_hours


def rows() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "stage": ["tune", "tune", "final", "final"],
            "strategy": ["decoder", "decoder", "decoder", "baseline"],
            "status": ["ok", "running", "ok", "failed"],
            "started": [1000.0, 5000.0, 2000.0, 3000.0],
            "ended": [4600.0, None, 9200.0, 3360.0],
            "wall_s": [3000.0, None, 7000.0, None],
        }
    )


def test_device_hours_per_trial_stage_and_strategy():
    trials = rows()
    gpu = trial_hours(trials, {"cpu": 4, "gpu": 0.5}, now=8600.0)
    # Billed time x GPUs: 1 h x 0.5; running since 5000 s, now 8600 s: 1 h x 0.5; 2 h; 0.1 h.
    assert list(gpu.round(6)) == [0.5, 0.5, 1.0, 0.05]
    cpu = trial_hours(trials, {"cpu": 2, "gpu": 0}, now=8600.0)
    assert list(cpu.round(6)) == [2.0, 2.0, 4.0, 0.2]
    config = {"search": {"resources": {"cpu": 2, "gpu": 0}, "budget": {"price_per_hour": 0.5}}}
    finished = trials[trials.status != "running"]
    stages, strategies, unit = compute_tables(finished, config)
    assert unit == "CPU"
    assert stages.to_dict("list") == {
        "stage": ["tune", "final"],
        "trials": [1, 2],
        "CPU-hours": [2.0, 4.2],
        "dollars": [1.0, 2.1],
    }
    by = strategies.set_index(["strategy", "stage"])["CPU-hours"]
    assert by[("decoder", "final")] == 4.0 and by[("baseline", "final")] == pytest.approx(0.2)


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


@pytest.mark.slow
def test_a_spent_wall_clock_stops_the_tune_stage_and_the_final_stage_still_runs(
    ray_cluster, studies, tmp_path
):
    cluster = ray_cluster(head_cpus=1)
    experiment = tmp_path / "runs" / "budget"
    args = ["--storage", str(tmp_path / "runs"), "--name", "budget", "--stages", "tune,final"]
    args += ["--set", "search.strategies=[decoder_4]", "--set", "search.seeds=[0]"]
    args += ["--set", "search.tune.trials_per_strategy=20", "--set", "search.tune.asha=false"]
    # 20 proposals of ~2 s or more each, one at a time: well over the 12 s budget, which
    # still lets the first proposal start (the clock runs from the driver's start).
    args += ["--set", "search.max_concurrent_trials=1", "--set", "trial.epochs=4"]
    args += ["--set", "search.budget.wall_clock_min=0.2", "--set", "search.budget.price_per_hour=2"]
    args += [*TINY, "--set", "trial.image_size=160", "--set", "trial.batch_size=2"]
    study = studies(cluster.address, args)
    assert study.wait(400) == 0, study.log_tail()
    log = study.log_path.read_text()
    assert "[budget] tune: the wall-clock budget (search.budget.wall_clock_min) is spent" in log
    trials = pd.read_csv(experiment / "trials.csv")
    tune = trials[trials.stage == "tune"]
    assert 1 <= len(tune) < 20 and (tune.status == "ok").all()  # running ones finished
    # No tune proposal started after the deadline (the driver's start + 12 s; the first
    # proposal starts a few seconds after the driver).
    first_start = tune.started.min()
    assert (tune.started < first_start + 12).all(), tune[["trial_name", "started"]]
    final = trials[trials.stage == "final"]
    assert len(final) == 1 and (final.status == "ok").all()
    report = (experiment / "report" / "report.md").read_text()
    assert "## Compute" in report
    compute = report.split("## Compute", 1)[1]
    assert "| tune |" in compute and "| final |" in compute and "CPU-hours" in compute
    assert "| decoder_4 | tune |" in compute and "dollars" in compute


def test_each_stage_says_once_that_it_stopped_for_the_budget(capsys, tmp_path):
    budget = Budget(str(tmp_path), "b", {"cpu": 1, "gpu": 0}, deadline=0.0)
    why = budget.exhausted()
    for stage in ("tune", "tune", "explore"):
        budget.announce(why, stage, 3, 10)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(":")[0] for line in lines] == ["[budget] tune", "[budget] explore"]
    assert "no more proposals after 3 of 10" in lines[0]
