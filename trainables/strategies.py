"""[from strategies.py]
Fine-tuning strategies: which parts of the network train, as rows of one table.

A strategy is a freeze mask (`trainables.freeze`): the network (`mobilenet_v2`, another
segmentation-models-pytorch encoder, or `unet64`, the from-scratch baseline) and the parts that
train (`enc0`-`enc4` encoder stages, `dec0`-`dec4` decoder blocks, `head`); everything else is
frozen. The paper's eight are named rows; any mask name (`mobilenet_v2:enc3-4+dec0-4`) is a
strategy too, which is how the explore stage names what it finds. Adding a named strategy is
adding a row.

Frozen BatchNorm layers: `bn_update_frozen=True` lets them keep updating their running
statistics in training mode (what the paper's code did, since it only set
`requires_grad=False`); `False` pins them in eval mode, surviving `model.train()`. Every row
keeps the paper's behaviour (True) by default; the trial config key `bn_update_frozen`
overrides it.

`python -m trainables.strategies --json` prints every strategy with its mask and parameter counts.
"""

from __future__ import annotations

import argparse
import json

from trainables.nets.freeze import (
    PART_ORDER,
)
from trainables.nets.models import build_model
from trainables.nets.strategies import PAPER_STRATEGIES, STRATEGIES, apply_strategy


def _part_rank(part: str) -> int:
    return PART_ORDER.index(part) if part in PART_ORDER else -1


def describe_all(train_head: bool = False) -> list[dict]:
    """Every strategy with its trainable and total parameter counts (weights not loaded)."""
    rows = []
    for strategy in STRATEGIES.values():
        model = build_model(strategy.model, encoder_weights="none")
        applied = apply_strategy(model, strategy, train_head=train_head, verbose=False)
        rows.append(
            {
                "name": strategy.name,
                "model": strategy.model,
                "mask": strategy.mask,
                "parts": sorted(strategy.parts, key=_part_rank),
                "trainable_params": applied.trainable_params,
                "total_params": applied.total_params,
                "bn_update_frozen": strategy.bn_update_frozen,
                "in_paper": strategy.name in PAPER_STRATEGIES,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainables.strategies",
        description="List the fine-tuning strategies with trainable/total parameter counts.",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--train-head", action="store_true", help="count the head as trainable")
    args = parser.parse_args(argv)
    rows = describe_all(train_head=args.train_head)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'strategy':<15}{'mask':<32}{'trainable':>12}{'total':>12}")
        for r in rows:
            print(
                f"{r['name']:<15}{r['mask']:<32}{r['trainable_params']:>12,}{r['total_params']:>12,}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

