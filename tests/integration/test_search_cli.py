"""`python search/run.py` starting Ray: copied alone it runs a tiny study, and a trial larger
than the local Ray is refused before any trial."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest
from helpers import RUN_PY, TINY, copy_alone, run_copy


@pytest.mark.slow
def test_run_py_copied_alone_runs_a_tiny_study(tmp_path):
    folder = copy_alone(tmp_path)
    args = ["--storage", "runs", "--name", "solo", "--stages", "final"]
    args += ["--set", "search.strategies=[decoder]", "--set", "search.seeds=[0]"]
    args += ["--set", "trial.epochs=1", *TINY]
    # RAY_ADDRESS=local: a private Ray instance, never another one running on this machine.
    done = run_copy(folder, args, RAY_ADDRESS="local")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    experiment = folder / "runs" / "solo"  # relative paths are read from where it runs
    trials = pd.read_csv(experiment / "trials.csv")
    assert list(trials.trial_name) == ["decoder__seed0"] and list(trials.status) == ["ok"]
    assert 0 <= trials.test_dice.iloc[0] <= 1
    assert (experiment / "report" / "report.md").exists()
    assert "FreezeFrame report: solo" in done.stdout


@pytest.mark.parametrize(("key", "asked"), [("cpu", 3), ("gpu", 1)])
def test_a_trial_larger_than_the_local_ray_is_refused_before_any_trial(key, asked, tmp_path):
    # Issue 21, item 5: search.resources.cpu=3 on a 2-CPU local Ray waited forever, silently.
    env = {**os.environ, "RAY_ADDRESS": "local", "RAY_AUTH_MODE": "disabled"}
    storage = tmp_path / "runs"
    args = ["--storage", str(storage), "--name", "big", "--stages", "final", "--num-cpus", "2"]
    args += ["--set", f"search.resources.{key}={asked}", *TINY]
    done = subprocess.run(
        [sys.executable, str(RUN_PY), *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"{key}: {asked}" in done.stderr and "search.resources {" in done.stderr
    assert "no trial could ever start" in done.stderr or "never start" in done.stderr
    assert not (storage / "big" / "trials.csv").exists()
