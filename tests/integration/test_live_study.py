"""The tune stage's Optuna study seen live in optuna-dashboard: optuna-dashboard serves a journal
file (`search.optuna_storage`), a small study then runs as its own process on a private Ray
cluster, and the dashboard's HTTP API shows the trials finished so far while the driver still has
trials to run.

The dashboard is up before the study starts: started after it, its start-up (several seconds on a
loaded 2-core machine) could outlast the study's few short trials (seen once in CI)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pandas as pd
import pytest
from helpers import TINY, wait_for_log

from search.driver.live_study import TRIAL_NAME

BUDGET = 4  # tune proposals of the one strategy: the first ends long before the last


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(url: str) -> dict | None:
    """The JSON at `url`, or None while the server is not answering yet."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())
    except OSError:
        return None


def dashboard_trials(base: str, study_name: str) -> list[dict]:
    """The trials optuna-dashboard shows for one study ([] before it exists)."""
    studies = (get(f"{base}/api/studies") or {}).get("study_summaries", [])
    ids = [s["study_id"] for s in studies if s["study_name"] == study_name]
    detail = get(f"{base}/api/studies/{ids[0]}") if ids else None
    return (detail or {}).get("trials", [])


def trial_name(trial: dict) -> str:
    return {a["key"]: a["value"] for a in trial["user_attrs"]}[TRIAL_NAME]


@pytest.mark.slow
def test_optuna_dashboard_shows_finished_trials_while_the_study_runs(
    ray_cluster, studies, tmp_path
):
    cluster = ray_cluster(head_cpus=2)
    experiment = tmp_path / "runs" / "live"
    journal = tmp_path / "dashboard" / "journal.log"  # a journal kept open across studies
    journal.parent.mkdir()
    journal.touch()  # optuna-dashboard opens an empty file, not a missing one (as README says)

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    dashboard_log = tmp_path / "dashboard.log"
    with open(dashboard_log, "w") as log:
        dashboard = subprocess.Popen(
            [str(Path(sys.executable).with_name("optuna-dashboard")), str(journal)]
            + ["--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while get(f"{base}/api/studies") is None:
            assert dashboard.poll() is None, dashboard_log.read_text()
            assert time.monotonic() < deadline, (
                f"no dashboard in 120 s:\n{dashboard_log.read_text()}"
            )
            time.sleep(0.2)

        args = ["--storage", str(tmp_path / "runs"), "--name", "live", "--stages", "tune"]
        args += ["--set", "search.strategies=[decoder]", "--set", "search.seeds=[0]"]
        args += ["--set", f"search.tune.trials_per_strategy={BUDGET}", "--set", "trial.epochs=2"]
        args += ["--set", "search.tune.asha=false", "--set", "search.max_concurrent_trials=1"]
        args += ["--set", f"search.optuna_storage={journal}"]
        study = studies(cluster.address, [*args, *TINY], "study.log")
        wait_for_log(study, f"optuna-dashboard {journal}", timeout=120)  # printed at stage start
        deadline = time.monotonic() + 150
        complete: list[dict] = []
        while time.monotonic() < deadline and not complete:
            assert dashboard.poll() is None, dashboard_log.read_text()
            shown = dashboard_trials(base, "live/tune_decoder")
            complete = [t for t in shown if t["state"] == "Complete"]
            driver_running = study.proc.poll() is None  # read after the dashboard answered
            if not complete:
                assert driver_running, f"study ended first:\n{study.log_tail()}"
                time.sleep(0.2)
        assert complete, f"no complete trial shown in 150 s:\n{study.log_tail()}"
        # The dashboard showed a finished trial while the driver ran and had trials to go.
        assert driver_running
        ended = pd.read_csv(experiment / "trials.csv").query("status == 'ok'")
        assert len(complete) < BUDGET and len(ended) < BUDGET
        # What it shows is what the trial scored: trials.csv's name and validation Dice.
        scores = dict(zip(ended.trial_name, ended.val_dice, strict=True))
        for trial in complete:
            assert trial["values"][0] == pytest.approx(scores[trial_name(trial)], abs=1e-6)

        assert study.wait(240) == 0, study.log_tail()
        # optuna-dashboard caches a study's trials for up to 10 s (its _storage.get_trials TTL):
        # the last trial may show a few seconds after the study ended.
        deadline = time.monotonic() + 30
        while True:
            names = [trial_name(t) for t in dashboard_trials(base, "live/tune_decoder")]
            if len(names) >= BUDGET or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert len(names) == BUDGET and len(set(names)) == BUDGET  # each trial once
    finally:
        dashboard.terminate()
        dashboard.wait(10)
    # The copy in the experiment holds the same trials under the study's key.
    copy = optuna.load_study(
        study_name="tune_decoder", storage=f"sqlite:///{experiment / 'studies' / 'tune.db'}"
    )
    assert sorted(t.user_attrs[TRIAL_NAME] for t in copy.trials) == sorted(names)
