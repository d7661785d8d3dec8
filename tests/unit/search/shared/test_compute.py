"""`search.shared.compute`: the device-hours of each trial, and the report's compute tables built
from them, per stage and strategy."""

from __future__ import annotations

import pytest
from helpers import trial_rows as rows

from search.report.compute import compute_tables
from search.shared.compute import trial_hours


def test_device_hours_per_trial_stage_and_strategy():
    trials = rows()
    gpu = trial_hours(trials, {"cpu": 4, "gpu": 0.5}, now=8600.0)
    # Billed time x GPUs: 1 h x 0.5; running since 5000 s, now 8600 s: 1 h x 0.5; 2 h; 0.1 h.
    assert list(gpu.round(6)) == [0.5, 0.5, 1.0, 0.05]
    cpu = trial_hours(trials, {"cpu": 2, "gpu": 0}, now=8600.0)
    assert list(cpu.round(6)) == [2.0, 2.0, 4.0, 0.2]
    config = {"search": {"resources": {"cpu": 2, "gpu": 0}, "budget": {"price_per_hour": 0.5}}}
    finished = trials[trials.status != "running"]
    stages, strategies, unit = compute_tables(finished, config)
    assert unit == "CPU"
    assert stages.to_dict("list") == {
        "stage": ["tune", "final"],
        "trials": [1, 2],
        "CPU-hours": [2.0, 4.2],
        "dollars": [1.0, 2.1],
    }
    by = strategies.set_index(["strategy", "stage"])["CPU-hours"]
    assert by[("decoder", "final")] == 4.0 and by[("baseline", "final")] == pytest.approx(0.2)
