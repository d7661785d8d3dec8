"""A spending limit for the search stages, and what a study spent.

`search.budget` bounds the tune and explore stages by wall-clock time (from when this driver
started) and/or device-hours (GPU-hours where trials take GPUs, CPU-hours where they take none;
every trial of the experiment counts, earlier runs included). Once either is spent the stages'
searchers stop proposing; running trials finish (or checkpoint when stopped); the final stage
still runs, on what the search found. Device-hours are counted as the report counts them
(`search.shared.compute`).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from pydantic import Field

from search.experiment.folder import Experiment
from search.shared.compute import device_units, trial_hours
from trainables.core.config import StrictModel

# Device-hours are read from the trials table at most this often: the searcher asks before every
# proposal, and the table grows with the study. A stage may overshoot by this long per trial.
SPENT_EVERY_S = 10.0


class BudgetSettings(StrictModel):
    """A spending limit for the tune and explore stages (`search.budget`): once spent they stop
    proposing, running trials finish, and the final stage runs on what was found."""

    wall_clock_min: float | None = Field(
        None, gt=0, description="minutes from the driver's start (each run of it)"
    )
    device_hours: float | None = Field(
        None,
        gt=0,
        description="GPU-hours (CPU-hours where trials take no GPU) of every trial of the "
        "experiment, earlier runs included",
    )
    price_per_hour: float | None = Field(
        None,
        ge=0,
        description="dollars per GPU-hour (CPU-hour) for the report's cost column, e.g. 0.526 "
        "for a g4dn.xlarge on demand",
    )


@dataclass
class Budget:
    """The limit one driver enforces (picklable: Ray pickles the searcher holding it)."""

    storage: str
    name: str
    resources: dict
    deadline: float | None = None  # UNIX time
    device_hours: float | None = None
    announced: tuple[str, ...] = ()  # the stages that said they stopped for it
    spent_read: tuple[float, float] | None = None  # (UNIX time read, device-hours then)

    @classmethod
    def start(cls, settings: BudgetSettings, experiment, resources: dict) -> Budget | None:
        """The budget of `search.budget` from now, None when it sets no limit."""
        if settings.wall_clock_min is None and settings.device_hours is None:
            return None
        deadline = None
        if settings.wall_clock_min is not None:
            deadline = time.time() + settings.wall_clock_min * 60
        store = experiment.store
        return cls(store.storage, store.name, resources, deadline, settings.device_hours)

    def spent_hours(self) -> float:
        """The experiment's device-hours so far, read at most every SPENT_EVERY_S."""
        now = time.time()
        if self.spent_read is not None and 0 <= now - self.spent_read[0] < SPENT_EVERY_S:
            return self.spent_read[1]
        trials = Experiment(self.storage, self.name).read_trials()
        spent = float(trial_hours(trials, self.resources).sum()) if len(trials) else 0.0
        self.spent_read = (now, spent)
        return spent

    def exhausted(self) -> str | None:
        """Why no more proposals may start, or None while budget is left."""
        if self.deadline is not None and time.time() >= self.deadline:
            return "the wall-clock budget (search.budget.wall_clock_min) is spent"
        if self.device_hours is not None:
            spent = self.spent_hours()
            if spent >= self.device_hours:
                _, unit = device_units(self.resources)
                return (
                    f"{spent:.3f} of {self.device_hours:g} {unit}-hours "
                    "(search.budget.device_hours) are spent"
                )
        return None

    def announce(self, why: str, stage: str, proposed: int, planned: int) -> None:
        """One line when a stage stops proposing for the budget (`why`: `exhausted()`)."""
        if stage not in self.announced:
            self.announced += (stage,)
            print(
                f"[budget] {stage}: {why}; no more proposals after {proposed} of "
                f"{planned} (running trials finish; the final stage runs on what was found)",
                file=sys.stderr,
                flush=True,
            )
