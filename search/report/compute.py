"""The report's compute section: device-hours (GPU-hours where the trials took GPUs, CPU-hours
where they took none) per stage and per strategy, and dollars at `search.budget.price_per_hour`.

From trials.csv: a trial's billed time is the start to the end of its last attempt
(`search.shared.compute.trial_hours`), times the GPUs (else CPUs) each trial held
(`search.resources`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from search.experiment.folder import TRIALS
from search.report.page import Paragraph, Table
from search.shared.compute import device_units, trial_hours
from search.shared.spec import STAGES


@dataclass
class ComputeSection:
    blocks: list = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stages: pd.DataFrame = field(default_factory=pd.DataFrame)
    strategies: pd.DataFrame = field(default_factory=pd.DataFrame)


def _settings(config: dict) -> tuple[dict, dict]:
    """(search.resources, search.budget) of a stored config."""
    search = config.get("search", {})
    return search.get("resources", {"cpu": 1, "gpu": 0}), search.get("budget") or {}


def compute_tables(trials: pd.DataFrame, config: dict) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(per stage, per strategy, unit): trials and device-hours (and dollars with a price)."""
    resources, budget = _settings(config)
    _, unit = device_units(resources)
    price = budget.get("price_per_hour")
    table = trials.assign(hours=trial_hours(trials, resources))
    started = table[pd.to_numeric(table["started"], errors="coerce").notna()]
    hours = f"{unit}-hours"

    def summarise(keys: list[str]) -> pd.DataFrame:
        out = started.groupby(keys, sort=False).agg(
            trials=("hours", "size"), hours=("hours", "sum")
        )
        out = out.reset_index().rename(columns={"hours": hours})
        if price is not None:
            out["dollars"] = out[hours] * price
        return out

    stages = summarise(["stage"])
    stages["order"] = stages["stage"].map({s: i for i, s in enumerate(STAGES)})
    stages = stages.sort_values("order").drop(columns="order").reset_index(drop=True)
    strategies = summarise(["strategy", "stage"])
    strategies = strategies.sort_values(hours, ascending=False).reset_index(drop=True)
    return stages, strategies, unit


def build_compute(trials: pd.DataFrame, config: dict) -> ComputeSection:
    if trials.empty or "started" not in trials:
        return ComputeSection()
    stages, strategies, unit = compute_tables(trials, config)
    if stages.empty:
        return ComputeSection()
    hours = f"{unit}-hours"
    _, budget = _settings(config)
    price = budget.get("price_per_hour")
    total = stages[hours].sum()
    cost = f" (${total * price:,.2f} at ${price:g} per {unit}-hour)" if price is not None else ""
    split = ", ".join(
        f"{row['stage']} {row['trials']} trials {row[hours]:.3f}" for _, row in stages.iterrows()
    )
    note = f"Compute: {total:.3f} {hours} in all{cost}; {split}."
    limits = [
        f"wall clock {budget['wall_clock_min']:g} min" if budget.get("wall_clock_min") else "",
        f"{budget['device_hours']:g} {hours}" if budget.get("device_hours") else "",
    ]
    limits = [limit for limit in limits if limit]
    if limits:
        note += f" Budget for the tune and explore stages: {', '.join(limits)}."

    def shown(frame: pd.DataFrame) -> pd.DataFrame:
        out = frame.copy()
        out[hours] = out[hours].map(lambda v: f"{v:.3f}")
        if "dollars" in out:
            out["dollars"] = out["dollars"].map(lambda v: f"{v:,.2f}")
        return out

    blocks = [
        Paragraph(
            f"Billed time of each trial (start to end of its last attempt) x the {unit}s it "
            f"held; {TRIALS}' `started`/`ended`."
        ),
        Table(shown(stages), "compute-stages"),
        Table(shown(strategies), "compute-strategies"),
    ]
    return ComputeSection(blocks, [note], stages, strategies)
