"""Live progress: a running trial's epoch, last validation Dice and elapsed time, the stage's
counts and an ETA - as plain lines in a log, as a refreshing table on a terminal."""

from __future__ import annotations

import io
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

from search.driver.progress import StageProgress

LINE = re.compile(r"\[final\] (\d+) finished, (\d+) running, (\d+) pending \| ETA (\S+)")


def test_plain_lines_say_epoch_dice_elapsed_counts_and_eta_at_most_every_interval():
    out = io.StringIO()
    progress = StageProgress("final", expected=3, epochs=4, interval_s=3600, stream=out)
    progress.start("decoder__seed0", 4)  # the first line is written at once
    progress.result("decoder__seed0", 1, 0.5)  # within the interval: no line
    progress.result("decoder__seed0", 2, 0.6123)
    progress.end("decoder__seed0", 4)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert "0 finished, 1 running, 2 pending | ETA -" in lines[0]
    assert "decoder__seed0 epoch 0/4 val_dice -" in lines[0]
    progress.interval_s = 0
    progress.update()
    assert LINE.search(out.getvalue().splitlines()[-1]).groups()[:3] == ("1", "0", "2")
    progress.start("decoder__seed1", 4)
    progress.result("decoder__seed1", 2, 0.7)
    last = out.getvalue().splitlines()[-1]
    assert "decoder__seed1 epoch 2/4 val_dice 0.7000" in last
    # 6 of 12 epochs trained so far: an ETA about as long again as the elapsed time.
    assert LINE.search(last).group(4) != "-"


def test_a_share_of_the_training_split_shows_its_own_epoch_count():
    # `decoder__f10__seed0` trains 56 epochs where its spec (the whole split's) says 6.
    out = io.StringIO()
    progress = StageProgress("final", expected=1, epochs=6, interval_s=0, stream=out)
    progress.start("decoder__f10__seed0", 6)
    progress.result("decoder__f10__seed0", 15, 0.9, epochs=56)
    assert "decoder__f10__seed0 epoch 15/56" in out.getvalue().splitlines()[-1]


def test_a_held_back_change_is_printed_when_the_interval_allows_and_silence_gets_heartbeats(
    monkeypatch,
):
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    out = io.StringIO()
    progress = StageProgress("final", expected=2, epochs=4, interval_s=10, stream=out)
    progress.start("baseline__seed0", 4)
    clock[0] += 1
    progress.start("baseline__seed1", 4)  # held back: 1 s after the last line
    progress.tick()
    assert len(out.getvalue().splitlines()) == 1
    clock[0] += 9
    progress.tick()  # the interval has passed: the second trial shows up without a new event
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and LINE.search(lines[-1]).groups()[:3] == ("0", "2", "0")
    clock[0] += 30
    progress.tick()  # nothing changed: no line before the heartbeat is due
    assert len(out.getvalue().splitlines()) == 2
    clock[0] += 30
    progress.tick()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and "baseline__seed1 epoch 0/4 val_dice - 1m09s" in lines[-1]


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
