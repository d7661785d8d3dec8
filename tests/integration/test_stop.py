"""Stop means stop (issue 21, item 1): Ctrl+C, SIGTERM and a lost lease end the whole study - the
running stage is cut short with its trials open for --resume, no later stage starts, no report
claims completeness - and the driver exits non-zero with one line saying why and how to resume."""

from __future__ import annotations

import json
import os
import signal
import time

import pandas as pd
import pytest
from helpers import TINY, wait_for_trials

from search.experiment.folder import BEST_RECIPES, LEASE, REPORT_DIR

STUDY = [
    "--stages", "tune,final", "--set", "search.strategies=[decoder_4]", "--set", "search.seeds=[0]",
    "--set", "search.tune.trials_per_strategy=4", "--set", "search.tune.asha=false",
    "--set", "search.max_concurrent_trials=1", "--set", "trial.epochs=40", *TINY,
]  # fmt: skip


def start_tune_stage(module_ray_cluster, studies, tmp_path):
    cluster = module_ray_cluster(head_cpus=2)  # one for the module: each test runs its own study
    experiment = tmp_path / "runs" / "stop"
    args = ["--storage", str(tmp_path / "runs"), "--name", "stop", *STUDY]
    study = studies(cluster.address, args)
    # A tune trial has reported an epoch: the stage is under way.
    wait_for_trials(study, experiment, lambda t: (t.epochs.fillna(0) >= 1).any(), timeout=180)
    return study, experiment


def assert_nothing_after_the_stopped_stage(experiment):
    trials = pd.read_csv(experiment / "trials.csv")
    assert set(trials.stage) == {"tune"}, trials  # the final stage never started
    assert "interrupted" in set(trials.status), trials  # open for --resume
    assert len(trials) < 4 or not (trials.status == "ok").all()
    assert not (experiment / BEST_RECIPES).exists()  # nothing built on a cut-short stage
    assert not (experiment / REPORT_DIR).exists()


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code", "words"), [
    (signal.SIGINT, 130, "Ctrl+C (SIGINT)"),
    (signal.SIGTERM, 143, "a termination request (SIGTERM)"),
])  # fmt: skip
def test_ctrl_c_or_sigterm_ends_the_study_not_just_the_stage(
    signum, code, words, module_ray_cluster, studies, tmp_path
):
    study, experiment = start_tune_stage(module_ray_cluster, studies, tmp_path)
    os.killpg(study.proc.pid, signum)  # as a terminal's Ctrl+C: the driver's process group
    assert study.wait(120) == code, study.log_tail()
    log = study.log_path.read_text()
    assert f"error: study stopped: {words}; no later stage ran" in log
    (line,) = [line for line in log.splitlines() if line.startswith("error: study stopped")]
    resume = line.split("Resume with: ")[1]
    assert resume.startswith("python ") and "--name stop" in resume and resume.endswith("--resume")
    assert "Tuner.restore" not in log  # Tune's own hint does not apply: FreezeFrame resumes
    assert_nothing_after_the_stopped_stage(experiment)
    assert not (experiment / LEASE).exists()  # released: the resume needs no wait


@pytest.mark.slow
def test_a_driver_that_loses_its_lease_stops_the_study(module_ray_cluster, studies, tmp_path):
    study, experiment = start_tune_stage(module_ray_cluster, studies, tmp_path)
    lease = json.loads((experiment / LEASE).read_text())
    other = {**lease, "token": "another-driver", "heartbeat": time.time() + 60}
    (experiment / LEASE).write_text(json.dumps(other))
    assert study.wait(120) == 2, study.log_tail()
    log = study.log_path.read_text()
    assert "another driver took this experiment's lease" in log
    assert "error: study stopped: another driver took this experiment's lease" in log
    assert_nothing_after_the_stopped_stage(experiment)
    assert json.loads((experiment / LEASE).read_text())["token"] == "another-driver"
