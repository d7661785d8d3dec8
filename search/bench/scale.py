"""`python -m search.bench.scale`: does the explore stage's bookkeeping scale to 1,000 trials?

A measurement harness, not a result: it runs the real explore machinery (the driver's Optuna
study through `StudySearcher`, NSGA-II, the trials table rewritten on every event, the progress
lines) on a local Ray with many logical GPUs, but the trainable is a stand-in that trains
nothing: it reports at once a deterministic function of its freeze mask. So what is timed is
the driver's side: sampler time per trial, driver memory at 100 / 500 / 1,000 finished trials,
the cost of rewriting trials.csv, and the wall time.
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

import psutil
import ray
from ray import tune

from search.driver.config import DEFAULT_CONFIG, load_config
from search.driver.stages import explore as explore_stage
from search.driver.stages.common import StageRunner
from search.experiment.folder import Experiment
from search.shared.spec import FINISHED
from trainables.core.errors import UserError


def stand_in(config: dict) -> None:
    """Scores a mask without training: more trainable parts and later ones score higher."""
    spec = config["spec"]
    parts = spec["trial"]["strategy"].split(":", 1)[1]
    score = 0.5 + 0.04 * len(re.findall(r"\d", parts)) + 0.001 * spec["trial"]["lr"]
    tune.report({"val_dice": min(score, 0.99), "epoch": 1, FINISHED: True})


class Meter(tune.Callback):
    """Driver memory when 100, 500 and 1,000 trials have finished."""

    def __init__(self, marks=(100, 500, 1000)):
        self.marks, self.memory_mb, self.done = set(marks), {}, 0

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.done += 1
        if self.done in self.marks:
            rss = psutil.Process().memory_info().rss / 2**20
            self.memory_mb[self.done] = round(rss, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m search.bench.scale", description=__doc__)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--gpus", type=int, default=64, help="logical GPUs of the local Ray")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args(argv)

    try:
        cfg = load_config(
            DEFAULT_CONFIG,
            [f"search.explore.trials={args.trials}", "search.explore.asha=false"]
            + ["search.explore.encoders=[mobilenet_v2,resnet18,efficientnet-b0]"]
            + ["search.progress_s=30"],
        )
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    storage = tempfile.mkdtemp(prefix="ff_scale_")
    experiment = Experiment(storage, "scale")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(address="local", num_cpus=os.cpu_count(), num_gpus=args.gpus, include_dashboard=False,
             log_to_driver=False)  # fmt: skip
    runner = StageRunner(cfg, experiment, "disabled")
    runner.trainable, runner.resources = stand_in, {"cpu": 0, "gpu": 1}

    plan = explore_stage.build_plan(runner, "none")
    ask_s = []
    propose = plan.propose

    def timed_propose():
        start = time.perf_counter()
        out = propose()
        ask_s.append(time.perf_counter() - start)
        return out

    plan.propose = timed_propose
    write_s = []
    write = experiment.write_trials

    def timed_write(frame):
        start = time.perf_counter()
        write(frame)
        write_s.append((len(frame), time.perf_counter() - start))

    experiment.write_trials = timed_write
    meter = Meter()
    started = time.perf_counter()
    runner.fit(
        "explore",
        {},
        args.trials,
        search_alg=explore_stage.StudySearcher([plan], metric="val_dice", mode="max"),
        metric="val_dice",
        mode="max",
        num_samples=-1,
        callbacks=[meter],
    )
    wall = time.perf_counter() - started
    ray.shutdown()
    shutil.rmtree(storage, ignore_errors=True)

    def mean_ms(values) -> float:
        return round(1000 * sum(values) / max(len(values), 1), 2)

    decile = max(1, len(ask_s) // 10)
    figures = {
        "trials": args.trials,
        "logical_gpus": args.gpus,
        "wall_s": round(wall, 1),
        "wall_s_per_trial": round(wall / args.trials, 3),
        "sampler_ms_per_trial_first_10pct": mean_ms(ask_s[:decile]),
        "sampler_ms_per_trial_last_10pct": mean_ms(ask_s[-decile:]),
        "trials_csv_writes": len(write_s),
        "trials_csv_write_ms_at_rows": {
            str(rows): mean_ms([s for n, s in write_s if n == rows])
            for rows in sorted({n for n, _ in write_s if n in (100, 500, args.trials)})
        },
        "trials_csv_write_s_total": round(sum(s for _, s in write_s), 1),
        "driver_memory_mb_at_finished": meter.memory_mb,
    }
    print(json.dumps(figures, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
