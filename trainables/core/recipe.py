"""The learning-rate recipe's vocabulary: the schedules, the keys each one reads, which of them
the tune stage proposes (and between which `search.tune` settings), and the recipe in words.

Every place that handles a recipe reads it from here: the trial and search configs (names and
bounds), the trainer (`trainables.training.setup.build_scheduler`), the tune and explore
stages' Optuna space, trials.csv's recipe columns and the report. Pydantic and the standard
library only: the search driver and the report import it without torch.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args

from pydantic import Field

Schedule = Literal["none", "exponential", "step", "cosine"]
SCHEDULES: tuple[str, ...] = get_args(Schedule)

# The bounds of the recipe's values, for every model that holds one (the trial config, the
# search config's tune ranges, a configuration found by the explore stage).
LearningRate = Annotated[float, Field(gt=0)]
DecayFactor = Annotated[float, Field(gt=0, le=1)]
StepSize = Annotated[int, Field(ge=1)]
Floor = Annotated[float, Field(ge=0)]

# What each schedule reads besides `lr` and `lr_schedule`, in the order Optuna draws them and
# the report words them.
DECAY_KEYS: dict[str, tuple[str, ...]] = {
    "none": (),
    "exponential": ("lr_gamma",),
    "step": ("lr_gamma", "lr_step_size"),
    "cosine": ("lr_min",),
}


@dataclass(frozen=True)
class Draw:
    """How the tune stage proposes one numeric key: Optuna's `suggest_<kind>` between two
    bounds, each the name of a `search.tune` setting or a number."""

    kind: Literal["float", "int"]
    low: str | int
    high: str
    log: bool = False

    def suggest(self, trial, key: str, ranges: Mapping[str, Any]):
        low = ranges[self.low] if isinstance(self.low, str) else self.low
        suggest = trial.suggest_float if self.kind == "float" else trial.suggest_int
        return suggest(key, low, ranges[self.high], log=self.log)


# The keys the tune stage proposes. `lr_min` (cosine's floor) is not one of them: a cosine
# trial decays to the trial config's `lr_min` (0 by default), recorded but never searched.
DRAWS: dict[str, Draw] = {
    "lr": Draw("float", "lr_min", "lr_max", log=True),
    "lr_gamma": Draw("float", "gamma_min", "gamma_max"),
    "lr_step_size": Draw("int", 1, "step_size_max"),
}
# `search.tune` settings that bound one draw: (low, high), low <= high.
RANGE_SETTINGS = tuple((d.low, d.high) for d in DRAWS.values() if isinstance(d.low, str))

# Every key a recipe may have: trials.csv's recipe columns, `best_recipes.yaml`, what the final
# stage copies from a tune or explore trial.
RECIPE_KEYS: tuple[str, ...] = (
    "lr",
    "lr_schedule",
    *dict.fromkeys(key for schedule in SCHEDULES for key in DECAY_KEYS[schedule]),
)


def decay_keys(schedule: str) -> tuple[str, ...]:
    """The keys `schedule` reads besides `lr` and `lr_schedule` (none for an unknown name)."""
    return DECAY_KEYS.get(schedule, ())


def keys_of(schedule: str) -> tuple[str, ...]:
    """Every key a trial with `schedule` trains with."""
    return ("lr", "lr_schedule", *decay_keys(schedule))


def proposed_keys(schedule: str) -> tuple[str, ...]:
    """The keys of `schedule` that the tune stage proposes (`keys_of` less the unsearched)."""
    return tuple(key for key in keys_of(schedule) if key == "lr_schedule" or key in DRAWS)


def suggest_recipe(trial, ranges: Mapping[str, Any]) -> None:
    """The tune stage's define-by-run space on an Optuna trial: `lr`, `lr_schedule` (one of
    `ranges["schedules"]`), then only the proposed keys of the schedule drawn.

    Args:
        ranges: the `search.tune` settings (`TuneSettings.model_dump()`).
    """
    DRAWS["lr"].suggest(trial, "lr", ranges)
    schedule = trial.suggest_categorical("lr_schedule", ranges["schedules"])
    for key in decay_keys(schedule):
        if key in DRAWS:
            DRAWS[key].suggest(trial, key, ranges)


def recipe_params(values: Mapping[str, Any]) -> dict:
    """The proposed keys of the schedule, from any mapping that has them (a trial config, a
    trials.csv row, an Optuna proposal); floats rounded to 12 significant digits, so a value
    read back from a CSV compares equal. What names a tune proposal and compares it with the
    config's own recipe."""
    keys = proposed_keys(values["lr_schedule"])
    return {key: _typed(key, _canonical(values[key])) for key in keys}


# The report's words for each decay key's value.
_WORDS = {
    "lr_gamma": lambda value: f"gamma {float(value):.3g}",
    "lr_step_size": lambda value: f"every {int(value)} epochs",
    "lr_min": lambda value: f"to {float(value):.2g}",
}


def recipe_text(values: Mapping[str, Any]) -> str:
    """'lr 0.0001, exponential (gamma 0.9)': a recipe in words. A key that `values` lacks (or
    holds as None) is not shown, nor are the schedule's keys after it."""

    def given(key: str) -> bool:
        return values.get(key) is not None

    schedule = str(values.get("lr_schedule") or "none")
    text = f"lr {float(values['lr']):.2g}, " if given("lr") else ""
    shown = itertools.takewhile(given, decay_keys(schedule))
    details = [_WORDS[key](values[key]) for key in shown]
    if details:
        return f"{text}{schedule} ({', '.join(details)})"
    return f"{text}{'constant' if schedule == 'none' else schedule}"


def _typed(key: str, value):
    if key == "lr_schedule":
        return str(value)
    if key in DRAWS and DRAWS[key].kind == "int":
        return int(value)
    return _canonical(value)


def _canonical(value):
    if isinstance(value, float):
        return float(f"{value:.12g}")
    if hasattr(value, "item"):  # a numpy scalar from a CSV row
        return _canonical(value.item())
    return value
