"""The test metrics of the trials table: which columns, their labels, which way is better, and
the range their values can take (the report clips its intervals to it).

Shared by the report (ranking, plots) and the driver's preflight (the configured report metric is
checked before any trial runs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from trainables.core.errors import ConfigError


@dataclass(frozen=True)
class Metric:
    """A test metric column of the trials table and how to read it."""

    column: str
    label: str
    higher_is_better: bool
    percent: bool  # stored as a fraction in [0, 1], shown as a percentage
    low: float = -math.inf  # the smallest value the metric can take
    high: float = math.inf  # the largest

    @property
    def unit_label(self) -> str:
        return f"{self.label} (%)" if self.percent else self.label


METRICS: dict[str, Metric] = {
    m.column: m
    for m in [
        Metric("test_dice", "Dice", True, True, 0.0, 1.0),
        Metric("test_iou", "IoU", True, True, 0.0, 1.0),
        Metric("test_pixel_accuracy", "Pixel accuracy", True, True, 0.0, 1.0),
        Metric("test_hd_mm", "HD (mm)", False, False, 0.0),
        Metric("test_hc_abs_diff_mm", "HC abs. diff. (mm)", False, False, 0.0),
    ]
}
# The other test columns' ranges, by name: overlap scores and rates are fractions, distances and
# errors in mm are >= 0, a signed difference has no bound. First match wins.
_RANGES = (
    ("signed", (-math.inf, math.inf)),
    ("dice", (0.0, 1.0)),
    ("iou", (0.0, 1.0)),
    ("pixel_accuracy", (0.0, 1.0)),
    ("_rate", (0.0, 1.0)),
    ("_mm", (0.0, math.inf)),
)


def value_range(column: str) -> tuple[float, float]:
    """(low, high) a test column's values can take; (-inf, inf) when its name says nothing."""
    if column in METRICS:
        return METRICS[column].low, METRICS[column].high
    return next((bounds for key, bounds in _RANGES if key in column), (-math.inf, math.inf))


def get_metric(name: str, trials: pd.DataFrame | None = None) -> Metric:
    """The metric `name`: a known one, or another numeric `test_*` column of `trials`.

    Unknown columns are read as lower-is-better when they end in `_mm` (a distance) or `_rate`
    (a failure rate), else higher.
    Raises ConfigError listing the valid names.
    """
    if name in METRICS:
        return METRICS[name]
    extra = [] if trials is None else numeric_test_columns(trials)
    if name in extra:
        lower_is_better = name.endswith(("_mm", "_rate"))
        low, high = value_range(name)
        return Metric(name, name.removeprefix("test_"), not lower_is_better, False, low, high)
    valid = sorted(set(METRICS) | set(extra))
    raise ConfigError(f"unknown metric {name!r}; valid: {valid}")


def numeric_test_columns(trials: pd.DataFrame) -> list[str]:
    return [
        c
        for c in trials.columns
        if c.startswith("test_") and pd.api.types.is_numeric_dtype(trials[c])
    ]
