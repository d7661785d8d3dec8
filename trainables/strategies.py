"""List every fine-tuning strategy (the table of `trainables.nets.strategies`) with its freeze
mask and its trainable and total parameter counts.

    python -m trainables.strategies [--json] [--train-head]
"""

from __future__ import annotations

import argparse
import json
import sys

from trainables.core.errors import UserError
from trainables.nets.freeze import PART_ORDER
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
    try:
        rows = describe_all(train_head=args.train_head)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
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
