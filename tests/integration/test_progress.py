"""Live progress of a whole study: a running trial's epochs in a log, a table refreshed in place on
a terminal."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time

import pandas as pd
import pytest
from helpers import RUN_PY, TINY

LINE = re.compile(r"\[final\] (\d+) finished, (\d+) running, (\d+) pending \| ETA (\S+)")


def run_study(args: list[str], tmp_path, **kwargs):
    env = {
        **os.environ,
        "RAY_ADDRESS": "local",
        "RAY_AUTH_MODE": "disabled",
        "PYTHONUNBUFFERED": "1",
    }
    return subprocess.Popen([sys.executable, str(RUN_PY), *args], cwd=tmp_path, env=env, **kwargs)


STUDY = ["--storage", "runs", "--name", "p", "--stages", "final", "--set", "search.seeds=[0]"]
STUDY += ["--set", "search.strategies=[decoder]", "--set", "trial.epochs=6"]
STUDY += ["--set", "search.progress_s=0.5", *TINY, "--set", "trial.image_size=128"]


@pytest.mark.slow
def test_a_log_shows_each_epoch_of_a_running_trial_before_it_finishes(tmp_path):
    proc = run_study(STUDY, tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    lines = out.splitlines()
    done = next(i for i, line in enumerate(lines) if "decoder__seed0: ok" in line)
    epochs = {
        int(m.group(1))
        for line in lines[:done]
        if (m := re.search(r"decoder__seed0 epoch (\d+)/6 val_dice \d\.\d{4} \d+s", line))
    }
    assert len(epochs) >= 3 and max(epochs) >= 4, lines[:done]
    assert any(LINE.search(line) and "1 running" in line for line in lines[:done])
    trials = pd.read_csv(tmp_path / "runs" / "p" / "trials.csv")
    assert trials.epochs.iloc[0] == 6


@pytest.mark.slow
def test_a_terminal_gets_a_table_refreshed_in_place(tmp_path):
    leader, follower = pty.openpty()
    proc = run_study(STUDY, tmp_path, stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    output = b""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the study closed the terminal
                break
            if not chunk:
                break
            output += chunk
        elif proc.poll() is not None:
            break
    proc.wait(timeout=60)
    os.close(leader)
    text = output.decode(errors="replace")
    assert proc.returncode == 0, text[-3000:]
    # rich redraws its table: cursor-up / erase-line escapes, and the table's rows repeated.
    assert text.count("\x1b[2K") >= 3 or text.count("\x1b[1A") >= 3, text[-2000:]
    assert len(re.findall(r"decoder__seed0\s*│\s*\d/6", text)) >= 2, text[-2000:]
    assert "finished" in text and "ETA" in text
