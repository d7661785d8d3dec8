"""Live progress of a stage: each running trial's epoch, last validation Dice and elapsed time,
the stage's finished / running / pending counts and an ETA.

On a terminal a `rich` live table refreshes in place; elsewhere (a log file, `ray submit`, a
job's output) the same facts come as plain lines, at most one every `interval_s` seconds: a
change held back by that limit is printed when it expires, and with no change at all a line
still comes every `HEARTBEAT_INTERVALS` x `interval_s` seconds (elapsed times growing), so a
slow study and a hung one look different. The trials table (`trials_table.TrialsTable`) feeds it
and calls `tick()` on every step of Tune's loop.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass

from rich.console import Console
from rich.live import Live
from rich.table import Table

HEARTBEAT_INTERVALS = 6  # a plain line at least every 6 x interval_s (60 s by default)


@dataclass
class Running:
    """What the display knows of one running trial."""

    epoch: int = 0
    epochs: int = 0
    val_dice: float | None = None
    started: float = 0.0


class StageProgress:
    """The display of one stage; `update()` after every change, `close()` at the end.

    Args:
        stage: the stage's name.
        expected: trials in the stage, earlier runs included.
        epochs: epochs per trial (for the ETA).
        interval_s: the least time between two plain lines (not on a terminal).
        stream: where it writes (stdout).
    """

    def __init__(self, stage: str, expected: int, epochs: int, interval_s: float, stream=None):
        self.stage, self.expected, self.epochs = stage, expected, epochs
        self.interval_s = interval_s
        self.stream = stream or sys.stdout
        self.started = time.monotonic()
        self.running: dict[str, Running] = {}
        self.finished: dict[str, int] = {}  # trial -> epochs it trained, this run and earlier
        self.finished_before = 0
        # No line yet: the first is due at once (time.monotonic() may be small after a boot).
        self.last_line = -math.inf
        self.held_back = False  # a change not yet printed (plain lines only)
        self.live: Live | None = None
        if self.stream.isatty():
            console = Console(file=self.stream)
            self.live = Live(self._table(), console=console, refresh_per_second=2, transient=True)
            self.live.start()

    def start(self, trial: str, epochs: int) -> None:
        self.running[trial] = Running(epochs=epochs, started=time.monotonic())
        self.update()

    def result(
        self, trial: str, epoch: int | None, val_dice: float | None, epochs: int | None = None
    ) -> None:
        """`epochs`: the trial's own count when it differs from its spec's (a share of the
        training split trained for as many steps as the whole: more epochs)."""
        running = self.running.setdefault(trial, Running(started=time.monotonic()))
        running.epochs = epochs or running.epochs
        running.epoch = epoch or running.epoch
        running.val_dice = val_dice if val_dice is not None else running.val_dice
        self.update()

    def end(self, trial: str, epochs: int) -> None:
        self.running.pop(trial, None)
        self.finished[trial] = epochs
        self.update()

    def counts(self) -> tuple[int, int, int]:
        done = len(self.finished) + self.finished_before
        running = len(self.running)
        return done, running, max(0, self.expected - done - running)

    def eta_s(self) -> float | None:
        """Seconds left, from the epochs trained so far in this run and those still to train."""
        trained = sum(self.finished.values()) + sum(r.epoch for r in self.running.values())
        if not trained:
            return None
        done, _running, pending = self.counts()
        left = sum(max(0, r.epochs - r.epoch) for r in self.running.values())
        left += pending * self.epochs
        return (time.monotonic() - self.started) / trained * left

    def summary(self) -> str:
        done, running, pending = self.counts()
        eta = self.eta_s()
        shown = "ETA -" if eta is None else f"ETA {_duration(eta)}"
        return f"[{self.stage}] {done} finished, {running} running, {pending} pending | {shown}"

    def _trial_text(self, name: str, running: Running) -> str:
        dice = "-" if running.val_dice is None else f"{running.val_dice:.4f}"
        elapsed = _duration(time.monotonic() - running.started)
        return f"{name} epoch {running.epoch}/{running.epochs} val_dice {dice} {elapsed}"

    def _table(self) -> Table:
        table = Table(title=self.summary(), title_justify="left")
        for column in ("trial", "epoch", "val Dice", "elapsed"):
            table.add_column(column)
        for name, running in sorted(self.running.items()):
            dice = "-" if running.val_dice is None else f"{running.val_dice:.4f}"
            elapsed = _duration(time.monotonic() - running.started)
            table.add_row(name, f"{running.epoch}/{running.epochs}", dice, elapsed)
        return table

    def update(self, force: bool = False) -> None:
        if self.live is not None:
            self.live.update(self._table())
            return
        now = time.monotonic()
        if not force and now - self.last_line < self.interval_s:
            self.held_back = True
            return
        self.last_line, self.held_back = now, False
        trials = "; ".join(self._trial_text(n, r) for n, r in sorted(self.running.items()))
        print(self.summary() + (f" | {trials}" if trials else ""), file=self.stream, flush=True)

    def tick(self) -> None:
        """Called often (every step of Tune's loop): refreshes the elapsed times on a terminal;
        in a log prints a held-back change once the interval allows, or a heartbeat line."""
        if self.live is not None:
            self.live.update(self._table())
            return
        since = time.monotonic() - self.last_line
        if (self.held_back and since >= self.interval_s) or (
            self.running and since >= HEARTBEAT_INTERVALS * self.interval_s
        ):
            self.update(force=True)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
