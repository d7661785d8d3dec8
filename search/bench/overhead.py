"""Measure what Ray Tune and W&B logging cost per trial, on this machine, in one run.

    python -m search.bench.overhead [--trials 4] [--wandb offline] [--json FILE]

1. The same tiny trials (the embedded default's trial settings at 32 px, 2 epochs, on the
   shipped sample) run twice: in this process through `run_trial`, and as a `final` stage
   through the search service on a local Ray cluster with one CPU per trial. The difference in
   wall time per trial (the service's includes Ray's start and the report) is the Ray + logging
   overhead.
2. While the service runs, every process on the machine that belongs to it is sampled
   (psutil, every 0.25 s) and its resident memory attributed to: the driver, Ray's system
   processes (GCS, raylet, ...: what a head node runs), trial workers, and W&B's processes.
   W&B runs inside each trial (search/worker/wandb_link.py), so on a cluster its memory is on the
   trial's node; what the head carries per running trial is the driver's and Ray's growth.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import ray

from search.cli import main as search_main
from search.driver.config import DEFAULT_CONFIG, load_config
from trainables.core.errors import UserError
from trainables.data.trial_data import load_trial_data
from trainables.training.run import run_trial

CATEGORIES = ("driver", "ray_system", "trial_workers", "wandb")


def _category(proc: psutil.Process, driver_pid: int) -> str | None:
    try:
        if proc.pid == driver_pid:
            return "driver"
        name = " ".join(proc.cmdline()[:3]).lower()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    if "wandb" in name:
        return "wandb"
    if "ray::" in name or "default_worker.py" in name:
        return "trial_workers"
    if any(
        k in name for k in ("gcs_server", "raylet", "ray/dashboard", "log_monitor", "ray_client")
    ):
        return "ray_system"
    return None


class MemorySampler(threading.Thread):
    """Peak resident memory per category over the processes of this driver's tree and Ray."""

    def __init__(self, interval: float = 0.25):
        super().__init__(daemon=True)
        self.interval, self.stop_event = interval, threading.Event()
        self.peak = dict.fromkeys(CATEGORIES, 0)
        self.peak_workers = 0

    def run(self) -> None:
        me = os.getpid()
        while not self.stop_event.is_set():
            totals = dict.fromkeys(CATEGORIES, 0)
            workers = 0
            for proc in psutil.process_iter():
                category = _category(proc, me)
                if category:
                    try:
                        totals[category] += proc.memory_info().rss
                    except (psutil.NoSuchProcess, psutil.AccessDenied):
                        continue
                    workers += category == "trial_workers"
            for key, value in totals.items():
                self.peak[key] = max(self.peak[key], value)
            self.peak_workers = max(self.peak_workers, workers)
            time.sleep(self.interval)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m search.bench.overhead",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--trials", type=int, default=4, help="trials per run (>= 2)")
    parser.add_argument("--wandb", choices=["offline", "disabled"], default="offline")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    if args.trials < 2:
        parser.error("--trials must be at least 2 (the second run keeps 2 trials running)")
    try:
        figures = _measure(args.trials, args.wandb)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(figures, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


def _measure(trials: int, wandb_mode: str) -> dict:
    """The figures `main` prints: seconds per trial both ways, peak memory per category."""
    sets = ["image_size=32", "epochs=2", "batch_size=4", "bn_momentum=null", "num_threads=1"]
    sets += ["encoder_weights=none"]
    # The trial settings the service resolves: its embedded default plus the same overrides.
    base = load_config(DEFAULT_CONFIG, [f"trial.{s}" for s in sets]).trial
    data = load_trial_data(base)
    tmp = Path(tempfile.mkdtemp(prefix="freezeframe_overhead_"))
    started = time.perf_counter()
    for seed in range(trials):
        cfg = base.model_copy(update={"seed": seed, "strategy": "decoder_4"})
        run_trial(cfg, tmp / f"direct_{seed}", data=data, verbose=False)
    direct_s = (time.perf_counter() - started) / trials

    def service_run(concurrency: int) -> tuple[float, dict]:
        sampler = MemorySampler()
        sampler.start()
        argv_search = ["--storage", str(tmp / "runs"), "--name", f"overhead{concurrency}"]
        argv_search += ["--stages", "final", "--wandb", wandb_mode]
        argv_search += ["--set", "search.strategies=[decoder_4]"]
        argv_search += ["--set", f"search.seeds={list(range(trials))}"]
        argv_search += ["--set", f"search.max_concurrent_trials={concurrency}"]
        argv_search += [f"--set=trial.{s}" for s in sets]
        started = time.perf_counter()
        if search_main(argv_search) != 0:
            raise SystemExit(f"search.bench.overhead: the search failed ({' '.join(argv_search)})")
        seconds = (time.perf_counter() - started) / trials
        sampler.stop_event.set()
        sampler.join()
        ray.shutdown()
        return seconds, {k: v / 2**20 for k, v in sampler.peak.items()}

    service_s, one = service_run(1)
    _, two = service_run(2)
    return {
        "trials": trials,
        "wandb": wandb_mode,
        "direct_s_per_trial": round(direct_s, 2),
        "service_s_per_trial": round(service_s, 2),
        "overhead_s_per_trial": round(service_s - direct_s, 2),
        "peak_rss_mib_1_running": {k: round(v) for k, v in one.items()},
        "peak_rss_mib_2_running": {k: round(v) for k, v in two.items()},
        # What one more running trial adds, per category (2 running minus 1 running).
        "per_running_trial_mib": {k: round(two[k] - one[k]) for k in CATEGORIES},
    }


if __name__ == "__main__":
    raise SystemExit(main())
