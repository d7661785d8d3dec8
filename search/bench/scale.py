"""`python -m search.bench.scale`: does the explore stage's bookkeeping scale to 10,000 trials?

A measurement harness, not a result: it runs the real explore machinery (the driver's Optuna
study through `StudySearcher`, NSGA-II, the trials table, the progress lines) on a local Ray with
many logical GPUs, but the trainable is a stand-in that trains nothing: it reports at once a
deterministic function of its freeze mask. So what is timed is the driver's side: its
bookkeeping per trial (the sampler's proposals and results, and the trials table's callbacks:
appending rows, replacing trials.csv, the progress lines) by how many trials had finished, the
driver's memory, and the wall time.

`--reuse-actors` runs each stand-in trial in a reused worker (one logical CPU per trial instead
of a logical GPU): Ray starts no process per trial. `--driver-only` leaves Ray out: the same
searcher, trials table and progress lines are called in Tune's order (suggest, start, result,
complete, step end) with `--gpus` trials in flight, so 10,000 trials take minutes, not hours,
on a small machine; what it times is the same driver code, without Tune's own work.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections import deque
from types import SimpleNamespace

import psutil
import ray
from ray import tune

from search.driver.config import DEFAULT_CONFIG, load_config
from search.driver.stages import explore as explore_stage
from search.driver.stages.common import StageRunner
from search.driver.trials_table import TrialsTable
from search.experiment.folder import Experiment
from search.shared.spec import FINISHED
from trainables.core.errors import UserError

WARM_UP = 100  # trials finished before the first window counts (Ray starting its workers)
TABLE_CALLBACKS = (
    "on_trial_start",
    "on_trial_result",
    "on_trial_complete",
    "on_trial_error",
    "on_trial_recover",
    "on_step_end",
    "on_experiment_end",
)


def stand_in(config: dict) -> None:
    """Reports a mask's score at once, without training."""
    tune.report(stand_in_result(config))


def stand_in_result(config: dict) -> dict:
    """Scores a mask: more trainable parts and later ones score higher."""
    spec = config["spec"]
    parts = spec["trial"]["strategy"].split(":", 1)[1]
    score = 0.5 + 0.04 * len(re.findall(r"\d", parts)) + 0.001 * spec["trial"]["lr"]
    return {"val_dice": min(score, 0.99), "epoch": 1, FINISHED: True}


def replay(searcher, table: TrialsTable, ledger: Ledger, trials: int, in_flight: int) -> None:
    """Tune's calls to the searcher and the callbacks, without Ray: up to `in_flight` trials
    started, the oldest finishing first."""
    table.setup()
    running: deque = deque()
    issued = 0
    while True:
        while len(running) < in_flight and issued < trials:
            trial_id = f"t{issued}"
            config = searcher.suggest(trial_id)
            if not isinstance(config, dict):
                issued = trials
                break
            trial = SimpleNamespace(config=config, trial_id=trial_id, last_result={})
            table.on_trial_start(0, [], trial)
            running.append(trial)
            issued += 1
        if not running:
            break
        trial = running.popleft()
        trial.last_result = stand_in_result(trial.config)
        table.on_trial_result(0, [], trial, trial.last_result)
        table.on_trial_complete(0, [], trial)
        searcher.on_trial_complete(trial.trial_id, trial.last_result)
        ledger.on_trial_complete(0, [], trial)
        table.on_step_end(0, [])
    table.on_experiment_end([])


def windows(trials: int) -> list[tuple[int, int]]:
    """Ranges of finished trials the figures are given for: tenths of the run, the first one
    starting after the warm-up (100-1,000, 1,000-2,000, ... 9,000-10,000 for 10,000 trials)."""
    tenth = max(1, trials // 10)
    edges = [min(WARM_UP, tenth // 2) if i == 0 else i * tenth for i in range(10)] + [trials]
    return list(zip(edges[:-1], edges[1:], strict=True))


class Ledger(tune.Callback):
    """The driver's bookkeeping time by trials so far (a proposal counts at its own number, the
    rest at the number of trials finished), on the wall clock and in CPU time (the busy shared
    machine's load changes the first, much less the second), and its memory."""

    def __init__(self, trials: int):
        self.windows = windows(trials)
        self.done = self.proposed = 0
        self.seconds = {
            (clock, part): [0.0] * trials for clock in CLOCKS for part in ("sampler", "table")
        }
        self.memory_mb: dict[int, float] = {}
        self.marks = {end for _, end in self.windows} | {WARM_UP}

    def charge(self, part: str, wall_s: float, cpu_s: float, proposal: bool = False) -> None:
        slot = min(self.proposed if proposal else self.done, len(self.seconds[CLOCKS[0], part]) - 1)
        self.seconds["wall", part][slot] += wall_s
        self.seconds["cpu", part][slot] += cpu_s
        self.proposed += proposal

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.done += 1
        if self.done in self.marks:
            self.memory_mb[self.done] = round(psutil.Process().memory_info().rss / 2**20, 1)

    def per_trial_ms(self, clock: str, part: str | None = None) -> dict[str, float]:
        parts = [part] if part else ["sampler", "table"]
        return {
            f"{start}-{end}": round(
                1000 * sum(sum(self.seconds[clock, p][start:end]) for p in parts) / (end - start),
                2,
            )
            for start, end in self.windows
        }


CLOCKS = ("wall", "cpu")


def timed(ledger: Ledger, part: str, function, proposal: bool = False):
    def wrapper(*args, **kwargs):
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            return function(*args, **kwargs)
        finally:
            used = time.perf_counter() - wall, time.thread_time() - cpu
            ledger.charge(part, *used, proposal=proposal)

    return wrapper


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m search.bench.scale", description=__doc__)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--gpus", type=int, default=64, help="logical GPUs of the local Ray")
    parser.add_argument("--reuse-actors", action="store_true", help="see the description")
    parser.add_argument("--driver-only", action="store_true", help="see the description")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args(argv)

    try:
        if args.trials < 20:
            raise UserError(f"--trials {args.trials}: at least 20 (ten windows of two)")
        cfg = load_config(
            DEFAULT_CONFIG,
            # NSGA-II: the sampler whose proposal cost stays flat in the study's size (the default
            # TPE's grows with it: it models every finished trial at each proposal).
            [f"search.explore.trials={args.trials}", "search.explore.asha=false"]
            + ["search.explore.sampler=nsga2"]
            + ["search.explore.encoders=[mobilenet_v2,resnet18,efficientnet-b0]"]
            + ["search.progress_s=30"],
        )
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    storage = tempfile.mkdtemp(prefix="ff_scale_")
    experiment = Experiment(storage, "scale")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    cpus = args.gpus if args.reuse_actors else os.cpu_count()
    if not args.driver_only:
        ray.init(address="local", num_cpus=cpus, num_gpus=0 if args.reuse_actors else args.gpus,
                 include_dashboard=False, log_to_driver=False)  # fmt: skip
    runner = StageRunner(cfg, experiment, "disabled")
    runner.trainable = stand_in
    runner.resources = {"cpu": 1, "gpu": 0} if args.reuse_actors else {"cpu": 0, "gpu": 1}

    ledger = Ledger(args.trials)
    plan = explore_stage.build_plan(runner, "none")
    plan.propose = timed(ledger, "sampler", plan.propose, proposal=True)
    searcher = explore_stage.StudySearcher([plan], metric="val_dice", mode="max")
    searcher.on_trial_complete = timed(ledger, "sampler", searcher.on_trial_complete)
    writes = {"append_trials": [], "write_trials": []}
    for name, seconds in writes.items():
        if hasattr(experiment, name):  # (append_trials: not in code before December 2026)
            setattr(experiment, name, _clocked(getattr(experiment, name), seconds))
    originals = {name: getattr(TrialsTable, name) for name in TABLE_CALLBACKS}
    for name, method in originals.items():
        setattr(TrialsTable, name, timed(ledger, "table", method))
    started = time.perf_counter()
    try:
        if args.driver_only:
            table = TrialsTable(experiment, "explore", args.trials, progress_s=30)
            replay(searcher, table, ledger, args.trials, in_flight=args.gpus)
        else:
            runner.fit(
                "explore",
                {},
                args.trials,
                search_alg=searcher,
                metric="val_dice",
                mode="max",
                num_samples=-1,
                callbacks=[ledger],
            )
    finally:
        for name, method in originals.items():
            setattr(TrialsTable, name, method)
    wall = time.perf_counter() - started
    if not args.driver_only:
        ray.shutdown()
    shutil.rmtree(storage, ignore_errors=True)

    figures = {
        "trials": args.trials,
        "finished": ledger.done,
        "logical_gpus": 0 if args.reuse_actors else args.gpus,
        "logical_cpus": cpus,
        "reuse_actors": args.reuse_actors,
        "driver_only": args.driver_only,
        "wall_s": round(wall, 1),
        "wall_s_per_trial": round(wall / args.trials, 3),
    }
    for clock in CLOCKS:
        total = ledger.per_trial_ms(clock)
        first, last = next(iter(total)), next(reversed(total))
        figures |= {
            f"bookkeeping_ms_per_trial_{clock}": total,
            f"sampler_ms_per_trial_{clock}": ledger.per_trial_ms(clock, "sampler"),
            f"table_ms_per_trial_{clock}": ledger.per_trial_ms(clock, "table"),
            f"bookkeeping_last_over_first_{clock}": round(total[last] / max(total[first], 1e-9), 2),
        }
    figures |= {
        "trials_csv_appends": len(writes["append_trials"]),
        "trials_csv_append_ms_mean": _mean_ms(writes["append_trials"]),
        "trials_csv_snapshots": len(writes["write_trials"]),
        "trials_csv_snapshot_ms_last": _mean_ms(writes["write_trials"][-1:]),
        "trials_csv_s_total": round(sum(writes["append_trials"] + writes["write_trials"]), 1),
        "driver_memory_mb_at_finished": ledger.memory_mb,
    }
    print(json.dumps(figures, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=1)
    return 0


def _clocked(function, seconds: list[float]):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - start)

    return wrapper


def _mean_ms(values: list[float]) -> float:
    return round(1000 * sum(values) / max(len(values), 1), 2)


if __name__ == "__main__":
    raise SystemExit(main())
