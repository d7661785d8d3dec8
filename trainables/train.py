"""Run one trial end to end and write its results.

    python -m trainables.train --config configs/smoke.yaml --strategy decoder --seed 0 \
        --data ../shared/data/hc18 --out runs/decoder__seed0 [--set key=value ...]

Writes to --out: `config.yaml` (resolved), `split.csv`, `last.pt` (every epoch, for resuming),
`best.pt` (the epoch with the best validation Dice), `test_per_image.csv` and `metrics.json`.
Bad config or data fail before anything is written. Rerunning on an --out that holds a
`last.pt` but no `metrics.json` resumes after the last finished epoch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trainables.core.device import resolve_device
from trainables.core.errors import ConfigError, UserError
from trainables.data.trial_data import load_trial_data
from trainables.nets.resolve import load_trial_config
from trainables.training.run import run_trial


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainables.train",
        description="Run one FreezeFrame trial (train, validate each epoch, test the best epoch).",
    )
    parser.add_argument("--config", help="YAML file with a 'trial:' section (configs/*.yaml)")
    parser.add_argument("--strategy", help="fine-tuning strategy (python -m trainables.strategies)")
    parser.add_argument("--seed", type=int, help="trial seed (also names the run)")
    parser.add_argument("--data", help="HC18-layout folder (default: the shipped 12-image sample)")
    parser.add_argument("--out", required=True, help="results folder (resumed if it holds last.pt)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key"
    )
    parser.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        # Everything that can be wrong with the input is found here, before any work.
        cfg = load_trial_config(
            args.config, args.set, strategy=args.strategy, seed=args.seed, data_dir=args.data
        )
        if (Path(args.out) / "metrics.json").exists():
            raise ConfigError(f"{args.out} already holds a finished trial (metrics.json)")
        resolve_device(cfg)  # device=cuda without a usable GPU: say so now, not mid-training
        data = load_trial_data(cfg)
        run_trial(cfg, args.out, data=data, verbose=not args.quiet)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
