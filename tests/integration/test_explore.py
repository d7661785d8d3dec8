"""The explore stage and the tune stage on a private Ray cluster: explore rows and their front, a
resumed explore stage that repeats nothing, and a tune experiment that keeps every GPU busy."""

from __future__ import annotations

import time

import pandas as pd
import pytest
from helpers import TINY, wait_for_trials

from search.experiment.folder import Experiment
from search.report.explore import explore_rows
from trainables.nets.freeze import part_sizes
from trainables.nets.strategies import get_strategy


@pytest.mark.slow
def test_explore_writes_its_rows_front_and_resumes_without_repeating(
    ray_cluster, studies, tmp_path
):
    cluster = ray_cluster(head_cpus=2)
    experiment = tmp_path / "runs" / "explore"
    args = ["--storage", str(tmp_path / "runs"), "--name", "explore", "--stages", "explore"]
    args += ["--set", "search.explore.trials=6", "--set", "search.explore.population=4"]
    args += ["--set", "search.explore.encoders=[mobilenet_v2,resnet18]"]
    args += ["--set", "search.max_concurrent_trials=1", "--set", "trial.epochs=3", *TINY]
    # Start-or-resume: one command line for the first start and the restart (a Ray job retry).
    args += ["--resume", "auto"]
    first = studies(cluster.address, args, "first.log")
    wait_for_trials(first, experiment, lambda t: (t.status == "ok").sum() >= 2, timeout=240)
    first.kill()
    time.sleep(2)
    assert "--resume auto: starting" in first.log_path.read_text()
    written = {p: p.stat().st_mtime_ns for p in (experiment / "results").rglob("*.json")}
    assert (experiment / "lease.json").exists()  # the killed driver's: taken over at once
    resumed = studies(cluster.address, args, "resume.log")
    assert resumed.wait(400) == 0, resumed.log_tail()
    assert "--resume auto: continuing" in resumed.log_path.read_text()
    assert {p: p.stat().st_mtime_ns for p in written} == written  # none trained twice

    trials = pd.read_csv(experiment / "trials.csv")
    rows = trials[trials.stage == "explore"]
    assert len(rows) == 6 and rows.trial_name.is_unique
    assert set(rows.encoder) <= {"mobilenet_v2", "resnet18"}
    for row in rows.itertuples():
        strategy = get_strategy(row.strategy)  # the mask name, readable and parseable
        assert strategy.parts and row.encoder == strategy.network
        sizes = part_sizes(strategy.network)
        assert row.trainable_params == sum(sizes[p] for p in strategy.parts)
        assert row.total_params == sum(sizes.values())
    finished = rows[rows.status == "ok"]
    assert finished.val_dice.between(0, 1).all() and len(finished) >= 2

    # The report's front (search.report.explore) is the one recomputed here from trials.csv.
    shown = explore_rows(trials)
    ok = shown[shown.status == "ok"]
    expected = {
        r.trial_name
        for r in ok.itertuples()
        if not any(
            o.trainable_params <= r.trainable_params
            and o.val_dice >= r.val_dice
            and (o.trainable_params < r.trainable_params or o.val_dice > r.val_dice)
            for o in ok.itertuples()
        )
    }
    assert set(shown.loc[shown.on_front, "trial_name"]) == expected
    top = Experiment(str(tmp_path / "runs"), "explore").read_explore_top()
    assert {t["strategy"] for t in top} <= set(shown.loc[shown.on_front, "strategy"])
    assert (experiment / "studies" / "explore.db").exists()


@pytest.mark.slow
@pytest.mark.serial  # hand-over times: another test's load would slow a worker's start
def test_one_tune_experiment_keeps_every_gpu_busy_until_the_budget_runs_out(
    ray_cluster, studies, tmp_path
):
    gpus = 2
    cluster = ray_cluster(head_cpus=0)
    cluster.add_node(num_cpus=gpus, num_gpus=gpus)  # logical GPUs: trials train on the CPU
    cluster.wait_for_nodes()
    experiment = tmp_path / "runs" / "busy"
    args = ["--storage", (tmp_path / "runs").as_uri(), "--name", "busy", "--stages", "tune"]
    args += ["--set", "search.strategies=[decoder_4,decoder_0_1]"]
    args += ["--set", "search.tune.trials_per_strategy=3", "--set", "search.tune.asha=false"]
    args += ["--set", "search.resources={cpu: 1, gpu: 1}", "--set", "trial.device=cpu"]
    # 20 epochs: a trial must outlast HAND_OVER_S for the test to tell a hand-over from a GPU
    # idle for a whole trial; at 10 epochs the shortest trial took 9.9 s on a quiet machine.
    args += ["--set", "trial.epochs=20", *TINY, "--set", "trial.image_size=320"]
    study = studies(cluster.address, args)
    assert study.wait(600) == 0, study.log_tail()
    trials = pd.read_csv(experiment / "trials.csv")
    assert len(trials) == 6 and (trials.status == "ok").all()
    # A freed GPU takes the next proposal at once: after every trial's end, while proposals
    # remain, the next trial starts within HAND_OVER_S (a new worker process starts: ~8 s
    # here). With one Tune experiment per strategy, a strategy's last proposal trained alone
    # while the next strategy waited: a GPU idle for a whole trial (20 s and more here).
    starts = sorted(trials.started)
    for end in sorted(trials.ended):
        later = [start for start in starts if start > end]
        if later:
            assert later[0] - end < HAND_OVER_S, (end, later[0], trials)
    assert (trials.started < trials.ended.min()).sum() == gpus  # both GPUs busy at once
    assert (trials.ended - trials.started).min() > HAND_OVER_S  # trials long enough to tell


HAND_OVER_S = 15
