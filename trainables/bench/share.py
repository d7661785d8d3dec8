"""Trials sharing one CPU machine: each with its share of the cores, or each with all of them.

    python -m trainables.bench.share [--trials 2] [--image-size 128] [--data DIR] [--json FILE]

A search runs several trials per node at once. PyTorch (and OpenCV) start one thread per core in
every process, so N trials on C cores run N x C threads and spend their time waiting for each
other. FreezeFrame gives each trial `num_threads` = the CPUs it was granted (the search service
sets it from `resources.cpu`). This runs `--trials` FreezeFrame trial processes at once, started
together behind a barrier, first (or second: the order alternates by round) with C / N threads
each, then with C threads each, and reports the summed img/s of both layouts and their ratio.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import queue
import statistics
import sys
from pathlib import Path

from trainables.bench.loops import train_freezeframe_steps
from trainables.core.config import TrialConfig, parse_overrides
from trainables.core.errors import ConfigError, UserError
from trainables.data.trial_data import load_trial_data
from trainables.nets.resolve import resolve_trial_config
from trainables.training.setup import build_training


def _worker(cfg_dict: dict, steps: int, warmup: int, barrier, results) -> None:
    cfg = TrialConfig(**cfg_dict)
    trial = build_training(cfg, load_trial_data(cfg), verbose=False)
    epoch = train_freezeframe_steps(trial, 0, warmup)["epoch"]
    barrier.wait()  # all trials time the same span of the machine's life
    results.put(train_freezeframe_steps(trial, epoch, steps)["images_per_s"])


def run_layout(cfg_dict: dict, trials: int, steps: int, warmup: int) -> list[float]:
    """`trials` processes training at once; their img/s."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(trials), ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(cfg_dict, steps, warmup, barrier, results))
        for _ in range(trials)
    ]
    for proc in procs:
        proc.start()
    rates: list[float] = []
    try:
        while len(rates) < trials:
            try:
                rates.append(results.get(timeout=2))
            except queue.Empty:
                failed = [p.exitcode for p in procs if p.exitcode]
                if failed:  # the others would wait at the barrier for ever
                    raise RuntimeError(f"a trial process exited with code {failed[0]}") from None
    finally:
        for proc in procs:
            if len(rates) < trials:
                proc.terminate()
            proc.join()
    return rates


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainables.bench.share",
        description="Several FreezeFrame trials training at once on this CPU: each with its "
        "share of the cores vs each with all cores. Prints the summed img/s and the ratio.",
    )
    parser.add_argument("--trials", type=int, default=2, help="trial processes at once")
    parser.add_argument("--cores", type=int, help="cores to share (default: all of this machine)")
    parser.add_argument("--strategy", default="decoder")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--data", help="HC18-layout folder (default: the shipped 12-image sample)")
    parser.add_argument(
        "--max-images", type=int, default=200, help="use only the first N images (default 200)"
    )
    parser.add_argument("--steps", type=int, default=12, help="timed steps per trial")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per trial")
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the two layouts")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a trial config key (both layouts)",
    )
    parser.add_argument("--json", help="write the figures to this file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cores = args.cores or os.cpu_count() or 1
    try:
        if args.trials < 2:
            raise ConfigError("--trials must be at least 2 (trials sharing the machine)")
        if cores < args.trials:
            raise ConfigError(f"--cores {cores} < --trials {args.trials}: no share to give")
        base = {
            "strategy": args.strategy,
            "encoder_weights": "none",
            "device": "cpu",
            "image_size": args.image_size,
            "batch_size": args.batch_size,
            "data_dir": args.data,
            "max_images": args.max_images,
            **parse_overrides(args.set),
        }
        layouts = {
            "share": {**base, "num_threads": cores // args.trials},
            "all_cores": {**base, "num_threads": cores},
        }
        layouts = {k: resolve_trial_config(v, "bench.share") for k, v in layouts.items()}
        load_trial_data(layouts["share"])  # validates the data and fills the cache once
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        f"bench.share: {args.trials} trials on {cores} cores, {args.strategy}, "
        f"{args.image_size} px, batch {args.batch_size}; 'share' = {cores // args.trials} "
        f"threads each, 'all_cores' = {cores} threads each",
        flush=True,
    )
    totals: dict[str, list[float]] = {"share": [], "all_cores": []}
    for round_index in range(args.rounds):
        order = list(layouts)[:: 1 if round_index % 2 == 0 else -1]
        for name in order:
            rates = run_layout(layouts[name].model_dump(), args.trials, args.steps, args.warmup)
            totals[name].append(sum(rates))
            per_trial = ", ".join(f"{r:.1f}" for r in rates)
            print(f"  round {round_index + 1} {name}: {sum(rates):.1f} img/s ({per_trial})")
    ratios = [s / a for s, a in zip(totals["share"], totals["all_cores"], strict=True)]
    report = {
        "command": "python -m trainables.bench.share "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "trials": args.trials,
        "cores": cores,
        "threads": {name: cfg.num_threads for name, cfg in layouts.items()},
        "total_images_per_s": {name: statistics.median(v) for name, v in totals.items()},
        "rounds": totals,
        "ratio": statistics.median(ratios),
    }
    print(
        f"\nsummed img/s: share {report['total_images_per_s']['share']:.1f}, all cores "
        f"{report['total_images_per_s']['all_cores']:.1f}; ratio {report['ratio']:.2f}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
