"""Side-by-side speed of the paper's training loop and FreezeFrame's, in one process.

    python -m trainables.bench --device cpu --image-size 128 --data ../shared/data/hc18 \
        [--strategies decoder,baseline | paper] [--batch-size 10] [--json bench.json]

The paper's loop is the reference loop (`trainables.bench.reference_loop`: the loop of
Wang, Silvestre & Curran 2023, the study FreezeFrame generalises). For each strategy, both
loops train the same network from the same weights on the same files
with the same batch size for the same number of steps. They alternate round by round (reference,
FreezeFrame, then FreezeFrame, reference, ...) so that a shared, noisy machine slows both alike;
warm-up steps at the start of each round are not timed, and CUDA is synchronised around each
timed span. Reported: img/s of each (median over rounds), the ratio (median of the per-round
ratios), peak memory, evaluation img/s, and the projected wall time of the paper's grid.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

from trainables.bench.reference_loop import (
    REFERENCE_NUM_WORKERS,
    build_reference_loop,
    train_reference_steps,
)
from trainables.core.config import parse_overrides
from trainables.core.errors import ConfigError, UserError
from trainables.data.trial_data import load_trial_data
from trainables.nets.resolve import resolve_trial_config
from trainables.nets.strategies import PAPER_STRATEGIES, STRATEGIES
from trainables.training.loop import evaluate, train_one_epoch
from trainables.training.setup import Training, build_training

# The paper's grid: 8 strategies x 4 seeds x 20 epochs over its 799 training images, each
# epoch followed by a validation pass over the 200 held-out images (the paper's
# check_accuracy), plus one test pass of the best epoch: 21 x 200 evaluated images per trial.
PAPER_GRID = {"seeds": 4, "epochs": 20, "train_images": 799, "eval_images": 21 * 200}
DEFAULT_STRATEGIES = "decoder,baseline"
# Steps per round: enough for a stable median, few enough for a CPU run of a few minutes
# (128 px on 2 cores: ~1 s per decoder step, ~4 s per baseline step).
DEFAULT_STEPS = {"cpu": 8, "cuda": 50}
DEFAULT_WARMUP = {"cpu": 2, "cuda": 10}


def _reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    with contextlib.suppress(OSError):  # Linux: "5" resets the peak resident set size (VmHWM)
        Path("/proc/self/clear_refs").write_text("5")


def _peak_memory_mb(device: torch.device) -> float:
    """CUDA: peak allocated tensor memory. CPU: the process's peak resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_freezeframe_steps(trial: Training, epoch: int, steps: int, warmup: int = 0) -> dict:
    """FreezeFrame's own `train_one_epoch`: `warmup` untimed steps, then `steps` timed ones.

    Args:
        epoch: the first epoch number used (each call to train_one_epoch is one seeded epoch).

    Returns:
        images, seconds, images_per_s of the timed steps, and the next unused epoch number.
    """
    steps_per_epoch = -(-len(trial.train_images) // trial.cfg.batch_size)

    def run(n_steps: int) -> int:
        nonlocal epoch
        images = 0
        while n_steps > 0:
            take = min(n_steps, steps_per_epoch)
            images += train_one_epoch(trial, epoch, max_steps=take)["images"]
            n_steps, epoch = n_steps - take, epoch + 1
        return images

    run(warmup)
    _synchronize(trial.device)
    start = time.perf_counter()
    images = run(steps)
    _synchronize(trial.device)  # train_one_epoch already syncs once, reading the loss
    seconds = time.perf_counter() - start
    return {"images": images, "seconds": seconds, "images_per_s": images / seconds, "epoch": epoch}


def measure_evaluation(trial: Training, data) -> float:
    """Evaluation img/s of FreezeFrame's batched `evaluate` (one untimed warm-up batch)."""
    evaluate(trial, data.subset(data.filenames[: trial.cfg.eval_batch_size]))
    _synchronize(trial.device)
    start = time.perf_counter()
    evaluate(trial, data)
    _synchronize(trial.device)
    return len(data) / (time.perf_counter() - start)


def bench_strategy(cfg, data, steps: int, warmup: int, rounds: int, reference_workers: int) -> dict:
    """Both loops on one strategy, alternating; per-round figures and their medians."""
    trial = build_training(cfg, data, verbose=False)
    reference = build_reference_loop(cfg, data, num_workers=reference_workers)
    device, epoch = trial.device, 0
    runs = {"reference_loop": [], "freezeframe": []}
    peak = {"reference_loop": 0.0, "freezeframe": 0.0}
    for round_index in range(rounds):
        order = ["reference_loop", "freezeframe"][:: 1 if round_index % 2 == 0 else -1]
        for name in order:
            gc.collect()
            _reset_peak_memory(device)
            if name == "reference_loop":
                result = train_reference_steps(reference, steps, warmup)
            else:
                result = train_freezeframe_steps(trial, epoch, steps, warmup)
                epoch = result.pop("epoch")
            peak[name] = max(peak[name], _peak_memory_mb(device))
            runs[name].append(result["images_per_s"])
            print(
                f"  {cfg.strategy} round {round_index + 1}/{rounds} {name}: "
                f"{result['images_per_s']:.1f} img/s",
                flush=True,
            )
    eval_data = data.val if len(data.val) >= cfg.eval_batch_size else data.train
    out = {
        name: {
            "images_per_s": statistics.median(values),
            "rounds": values,
            "peak_memory_mb": peak[name],
        }
        for name, values in runs.items()
    }
    round_ratios = [f / r for f, r in zip(runs["freezeframe"], runs["reference_loop"], strict=True)]
    out["ratio"] = statistics.median(round_ratios)
    out["round_ratios"] = round_ratios
    out["eval_images_per_s"] = measure_evaluation(trial, eval_data)
    del trial, reference
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


def trial_seconds(train_images_per_s: float, eval_images_per_s: float) -> float:
    """Wall time of one trial of the paper grid at the given rates."""
    grid = PAPER_GRID
    return grid["epochs"] * grid["train_images"] / train_images_per_s + (
        grid["eval_images"] / eval_images_per_s
    )


def project_grid(results: dict, loop: str) -> dict:
    """Seconds for the paper grid: measured strategies at their rates; an unmeasured one at the
    slowest measured rate on the same network (listed under 'estimated'), or missing."""
    per_strategy, estimated, missing = {}, {}, []
    for name in PAPER_STRATEGIES:
        source = name
        if name not in results:
            same_net = [s for s in results if STRATEGIES[s].model == STRATEGIES[name].model]
            if not same_net:
                missing.append(name)
                continue
            source = min(same_net, key=lambda s: results[s][loop]["images_per_s"])
            estimated[name] = source
        rates = results[source]
        seconds = trial_seconds(rates[loop]["images_per_s"], rates["eval_images_per_s"])
        per_strategy[name] = PAPER_GRID["seeds"] * seconds
    total = None if missing else sum(per_strategy.values())
    return {
        "seconds": total,
        "per_strategy_s": per_strategy,
        "estimated": estimated,
        "missing": missing,
    }


def describe_device(device: torch.device, threads: int) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        names = [
            line for line in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in line
        ]
        cpu = names[0].split(":", 1)[1].strip() if names else cpu
    return f"cpu: {os.cpu_count()} logical cores ({cpu}), {threads} torch threads"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainables.bench",
        description="Train the paper's loop (the reference) and FreezeFrame's loop side by side; print img/s, "
        "their ratio, peak memory and the projected paper-grid wall time.",
    )
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument(
        "--strategies",
        default=DEFAULT_STRATEGIES,
        help=f"comma-separated, or 'paper' for all 8 (default {DEFAULT_STRATEGIES})",
    )
    parser.add_argument("--image-size", type=int, help="default 512 on CUDA, 128 on the CPU")
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--data", help="HC18-layout folder (default: the shipped 12-image sample)")
    parser.add_argument("--max-images", type=int, help="use only the first N images")
    parser.add_argument("--steps", type=int, help="timed steps per loop and round (cpu 8, cuda 50)")
    parser.add_argument(
        "--warmup", type=int, help="untimed steps per loop and round (cpu 2, cuda 10)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the two loops")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")
    parser.add_argument(
        "--reference-workers",
        type=int,
        default=REFERENCE_NUM_WORKERS,
        help="DataLoader workers of the reference loop "
        f"(default {REFERENCE_NUM_WORKERS}, as the paper's loop)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a trial config key (both loops; compile, channels_last, amp and "
        "augment_backend concern FreezeFrame's loop only)",
    )
    parser.add_argument("--json", help="write the figures to this file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    names = PAPER_STRATEGIES if args.strategies == "paper" else args.strategies.split(",")
    device = (
        "cuda"
        if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
        else "cpu"
    )
    try:
        base = {
            # Speed does not depend on the weights' values; no download needed.
            "encoder_weights": "none",
            "image_size": args.image_size or (512 if device == "cuda" else 128),
            "batch_size": args.batch_size,
            "device": device,
            "data_dir": args.data,
            "max_images": args.max_images,
            "num_threads": args.threads,
            **parse_overrides(args.set),
        }
        configs = [resolve_trial_config({**base, "strategy": name}, "bench") for name in names]
        data = load_trial_data(configs[0])
        if device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("--device cuda: no CUDA device is available")
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    steps = args.steps or DEFAULT_STEPS[device]
    warmup = DEFAULT_WARMUP[device] if args.warmup is None else args.warmup
    cfg0 = configs[0]
    print(
        f"bench: {describe_device(torch.device(device), torch.get_num_threads())}; "
        f"{cfg0.image_size} px, batch {cfg0.batch_size}, {len(data.train)} training images; "
        f"{args.rounds} rounds x ({warmup} warm-up + {steps} timed steps) per loop; "
        f"reference loop with {args.reference_workers} DataLoader workers",
        flush=True,
    )
    results = {}
    for cfg in configs:
        results[cfg.strategy] = bench_strategy(
            cfg, data, steps, warmup, args.rounds, args.reference_workers
        )
    grid = {loop: project_grid(results, loop) for loop in ("freezeframe", "reference_loop")}
    headline = "decoder" if "decoder" in results else names[0]
    report = {
        "command": "python -m trainables.bench " + " ".join(sys.argv[1:] if argv is None else argv),
        "device": describe_device(torch.device(device), torch.get_num_threads()),
        "torch": torch.__version__,
        "image_size": cfg0.image_size,
        "batch_size": cfg0.batch_size,
        "train_images": len(data.train),
        "steps": steps,
        "warmup": warmup,
        "rounds": args.rounds,
        "reference_loop_workers": args.reference_workers,
        "peak_memory": "CUDA: peak allocated tensor memory; CPU: the process's peak resident set "
        "size (both loops' models and the data included; DataLoader workers not)",
        "strategy": headline,
        "ratio": results[headline]["ratio"],
        "strategies": results,
        "paper_grid": PAPER_GRID,
        "projected_grid": grid,
    }
    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


def _minutes(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds / 60:.1f} min"


def print_report(report: dict) -> None:
    print(f"\n{report['device']}, {report['image_size']} px, batch {report['batch_size']}")
    print(
        f"{'strategy':<15}{'ref img/s':>11}{'FF img/s':>10}{'ratio':>7}"
        f"{'ref peak MB':>14}{'FF peak MB':>12}{'eval img/s':>12}"
    )
    for name, r in report["strategies"].items():
        ref, ff = r["reference_loop"], r["freezeframe"]
        print(
            f"{name:<15}{ref['images_per_s']:>11.1f}{ff['images_per_s']:>10.1f}"
            f"{r['ratio']:>7.2f}{ref['peak_memory_mb']:>14.0f}{ff['peak_memory_mb']:>12.0f}"
            f"{r['eval_images_per_s']:>12.1f}"
        )
    for loop, grid in report["projected_grid"].items():
        note = ""
        if grid["estimated"]:
            note = f" ({len(grid['estimated'])} strategies at a measured one's rate)"
        if grid["missing"]:
            note = f" (not measured: {', '.join(grid['missing'])})"
        print(f"projected paper grid, {loop}: {_minutes(grid['seconds'])}{note}")
    print(f"ratio ({report['strategy']}): {report['ratio']:.2f}")
