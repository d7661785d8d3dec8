"""Two studies on one machine: each starts its own private Ray unless told to join one, so the
first one's end does not take the second one's trials with it (issue 21, item 2)."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
from helpers import TINY, Study


def study_args(storage: Path, name: str, seeds: str) -> list[str]:
    return [
        "--storage", str(storage), "--name", name, "--stages", "final", "--num-cpus", "1",
        "--set", "search.strategies=[decoder_4,decoder_2_3_4]", "--set", f"search.seeds={seeds}",
        "--set", "trial.epochs=2", *TINY,
    ]  # fmt: skip


@pytest.mark.slow
def test_two_studies_started_5_s_apart_each_finish_every_trial_ok(tmp_path):
    # One machine's Ray folder for both (as /tmp/ray would be), kept apart from other tests.
    ray_tmp = tempfile.mkdtemp(prefix="ffray", dir="/tmp")
    env = {"RAY_TMPDIR": ray_tmp, "TMPDIR": ray_tmp}
    try:
        # No address given (RAY_ADDRESS empty): each must start its own Ray. The second has
        # more trials, so it outlives the first: joined to the first's Ray, it would die with it.
        first = Study("", tmp_path, study_args(tmp_path / "a", "one", "[0,1]"), "a.log", **env)
        time.sleep(5)
        second = Study("", tmp_path, study_args(tmp_path / "b", "two", "[0,1,2]"), "b.log", **env)
        assert first.wait(600) == 0, first.log_tail()
        assert second.wait(600) == 0, second.log_tail()
        for storage, name, trials in ((tmp_path / "a", "one", 4), (tmp_path / "b", "two", 6)):
            rows = pd.read_csv(storage / name / "trials.csv")
            assert len(rows) == trials and (rows["status"] == "ok").all(), rows
        sessions = [p for p in Path(ray_tmp, "ray").glob("session_2*") if p.is_dir()]
        assert len(sessions) == 2  # two Ray instances, one per study
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
