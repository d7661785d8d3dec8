"""Live progress: a running trial's epoch, last validation Dice and elapsed time, the stage's
counts and an ETA, as plain lines at most every interval."""

from __future__ import annotations

import io
import re
import time

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
