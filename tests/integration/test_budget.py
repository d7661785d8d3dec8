"""`search.budget` on a running study: a spent wall clock stops the tune stage's proposals, the
final stage still runs, and the report says what each stage and strategy cost."""

from __future__ import annotations

import pandas as pd
import pytest
from helpers import TINY


@pytest.mark.slow
@pytest.mark.serial  # a 12 s wall clock: another test's load would leave no proposal time to start
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
