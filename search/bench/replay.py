"""Replaying a search algorithm against the table of real trials (`search.bench.efficiency`).

A replay asks the explore stage's own study (its space `explore_space`, its `canonical` form
and its `sampler` factory: NSGA-II, multi-objective TPE or random, seeded) for proposals one at
a time, as `StudySearcher.propose` does (an all-frozen or repeated proposal is told FAIL and
never trained). Each proposal's validation Dice per epoch comes from the table when the table
holds that exact configuration, else from the surrogate. With ASHA, the curve is cut where Ray
Tune's `ASHAScheduler` (what the explore stage uses) would stop the trial: `Asha` reproduces its
rungs and cutoff. The study is told what Tune reports (the last epoch's Dice of a stopped trial, the
best epoch's of a finished one) and trainable parameters; the validation front (the hypervolume)
holds the finished trials only, as the explore stage's front does. Trials run one after the other
(the product runs as many at once as the cluster holds: ASHA then compares against fewer finished
trials at first).

The grid baseline replays the measured final-stage trials of the paper's strategies: one pass
over the 8 strategies per trial seed (strategies and seeds shuffled per search seed); its front
holds each strategy's mean Dice over the seeds trained so far (what the final stage reports). A
strategy the table lacks (the from-scratch `baseline`, too slow to measure here) is charged its
epochs and adds no point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import optuna
import pandas as pd

from search.bench.hypervolume import Event
from search.bench.surrogate import Surrogate, features
from search.bench.table import FLAGS, dice_columns
from search.driver.config import ExploreSettings, TuneSettings
from search.driver.stages.explore import canonical, explore_space, sampler
from trainables.core.recipe import recipe_params
from trainables.nets.freeze import PART_ORDER, mask_name
from trainables.nets.strategies import PAPER_STRATEGIES, get_strategy

SAMPLERS = ("nsga2", "tpe", "random")
ALGORITHMS = tuple(f"{s}{a}" for s in SAMPLERS for a in ("", "+asha")) + ("grid",)
# Ray Tune's ASHAScheduler default, which the explore stage keeps.
REDUCTION_FACTOR = 4


class Asha:
    """Ray Tune's asynchronous successive halving (one bracket, `ASHAScheduler`'s rule): rungs
    at grace_period x rf^k epochs below max_t (the explore stage's max_t is epochs + 1, its
    final report); at a rung a trial stops when its Dice is below the (1 - 1/rf) percentile of
    the Dice earlier trials recorded at that rung (the first trial at a rung always goes on)."""

    def __init__(self, grace_period: int, max_t: int, rf: float = REDUCTION_FACTOR):
        n = int(np.log(max_t / grace_period) / np.log(rf) + 1)
        self.rf = rf
        self.rungs = {int(grace_period * rf**k): [] for k in reversed(range(n))}

    def stops(self, epoch: int, dice: float) -> bool:
        recorded = self.rungs.get(epoch)
        if recorded is None:
            return False
        stop = bool(recorded) and dice < np.nanpercentile(recorded, (1 - 1 / self.rf) * 100)
        recorded.append(dice)
        return stop


@dataclass
class Oracle:
    """A configuration's validation Dice per epoch: the table's when it holds the exact
    configuration, the surrogate's otherwise."""

    table: pd.DataFrame
    surrogate: Surrogate
    encoders: list[str]

    def __post_init__(self) -> None:
        self.epochs = len(dice_columns(self.table))
        self.measured = {}
        rows = self.table[self.table["source"] == "explore"]
        for row in rows.to_dict("records"):
            curve = np.array([row[c] for c in dice_columns(self.table)], dtype=float)
            if np.isfinite(curve).all():
                self.measured[_key(config_of(row))] = curve
        self.hits = 0
        self.misses = 0

    def curve(self, params: dict) -> tuple[np.ndarray, int]:
        """(Dice per epoch, trainable parameters) of an explore proposal (canonical form)."""
        parts = [part for part in PART_ORDER if params[f"train_{part}"]]
        trainable, _ = get_strategy(mask_name(params["encoder"], parts)).counts()
        known = self.measured.get(_key(params))
        if known is not None:
            self.hits += 1
            return known, trainable
        self.misses += 1
        row = {**params, **{f: int(params[f]) for f in FLAGS}, "trainable_params": trainable}
        X = features(pd.DataFrame([row]), self.encoders, self.epochs)
        return self.surrogate.predict(X)[0], trainable


def config_of(row: dict) -> dict:
    """A table row in the explore stage's canonical form."""
    params = {"encoder": row["encoder"], "bn": row["bn"]}
    params |= {f: bool(row[f]) for f in FLAGS}
    recipe = {k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))}
    return params | recipe_params(recipe)


def _key(params: dict) -> tuple:
    return tuple(sorted((k, str(v)) for k, v in params.items()))


@dataclass(frozen=True)
class Setup:
    """What every replay of one benchmark shares."""

    encoders: tuple[str, ...]
    epochs: int
    budget: int
    population: int = 8
    grace_period: int = 2


def replay(algorithm: str, seed: int, oracle: Oracle, setup: Setup) -> list[Event]:
    """One search until `setup.budget` epochs are spent: its trials in the order they ended."""
    if algorithm == "grid":
        return replay_grid(oracle.table, seed, setup.budget)
    name, _, asha = algorithm.partition("+")
    if name not in SAMPLERS or asha not in ("", "asha"):
        raise ValueError(f"algorithm: unknown {algorithm!r}; valid: {list(ALGORITHMS)}")
    settings = ExploreSettings(
        encoders=list(setup.encoders),
        sampler=name,
        seed=seed,
        population=setup.population,
        epochs=setup.epochs,
        asha=bool(asha),
        grace_period=setup.grace_period,
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler(settings)())
    scheduler = Asha(setup.grace_period, setup.epochs + 1) if asha else None
    space = {"settings": settings.model_dump(), "tune": TuneSettings().model_dump()}
    seen: set = set()
    events: list[Event] = []
    spent, invalid = 0, 0
    while spent < setup.budget and invalid < 1000:
        trial = study.ask()
        valid = explore_space(trial, **space) is not False
        params = canonical(trial.params)
        if not valid or _key(params) in seen:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            invalid += 1
            continue
        seen.add(_key(params))
        invalid = 0
        curve, trainable = oracle.curve(params)
        trained = len(curve)
        for epoch in range(1, len(curve) + 1):
            if scheduler is not None and scheduler.stops(epoch, float(curve[epoch - 1])):
                trained = epoch
                break
        best = float(np.max(curve[:trained]))
        reported = best if trained == len(curve) else float(curve[trained - 1])
        study.tell(trial, [reported, trainable])
        spent += trained
        # The validation front holds finished trials only (the explore stage's `explore_table`
        # reads result files, which a stopped trial does not write): a stopped one adds no point.
        shown = best if trained == len(curve) else float("nan")
        events.append(Event(trained, shown, math.log10(trainable), _key(params)))
    return events


def replay_grid(table: pd.DataFrame, seed: int, budget: int) -> list[Event]:
    """The paper's grid, measured: one pass over the paper's strategies per trial seed in the
    table. A strategy the table lacks for that seed is charged its epochs and adds no point."""
    grid = table[table["source"] == "grid"]
    if grid.empty:
        raise SystemExit("grid: the table has no 'grid' rows (the paper's strategies)")
    epochs = len(dice_columns(table))
    rng = np.random.default_rng(seed)
    events, spent = [], 0
    for trial_seed in rng.permutation(sorted(grid["seed"].unique())):
        rows = grid[grid["seed"] == trial_seed].set_index("strategy")
        for i in rng.permutation(len(PAPER_STRATEGIES)):
            if spent >= budget:
                return events
            name = PAPER_STRATEGIES[i]
            if name in rows.index:
                row = rows.loc[name]
                trained, dice = int(row["epochs_trained"]), float(row["val_dice"])
            else:
                trained, dice = epochs, float("nan")
            log_params = math.log10(get_strategy(name).counts()[0])
            spent += trained
            events.append(Event(trained, dice, log_params, name))
    return events
