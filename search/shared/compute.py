"""Device-hours: what a trial costs, for the budget (`search.driver.budget`) and the report.

A trial's device-hours are its billed time (start to end of its last attempt, or to now while it
runs) times the GPUs (else CPUs) it holds (`search.resources`); the report shows them per stage
and strategy, in dollars at `search.budget.price_per_hour`.
"""

from __future__ import annotations

import time

import pandas as pd


def device_units(resources: dict) -> tuple[float, str]:
    """(units a trial holds, their name): its GPUs when it takes any, else its CPUs."""
    gpu = float(resources.get("gpu", 0) or 0)
    return (gpu, "GPU") if gpu > 0 else (float(resources.get("cpu", 1) or 1), "CPU")


def trial_hours(trials: pd.DataFrame, resources: dict, now: float | None = None) -> pd.Series:
    """Device-hours of each row of trials.csv (0 for a trial that never started)."""
    units, _ = device_units(resources)
    now = time.time() if now is None else now
    started = pd.to_numeric(trials.get("started"), errors="coerce")
    ended = pd.to_numeric(trials.get("ended"), errors="coerce")
    running = trials.get("status") == "running"
    end = ended.where(~running, now)
    seconds = (end - started).clip(lower=0)
    wall = pd.to_numeric(trials.get("wall_s"), errors="coerce")
    seconds = seconds.fillna(wall).fillna(0)  # rows without times: their training time
    return seconds * units / 3600
