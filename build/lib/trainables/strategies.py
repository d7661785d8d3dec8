"""Fine-tuning strategies: which parameters train, as rows of one table.

A strategy names its network and the parameter-name patterns that train (regexes matched at the
start of smp's stable module names: `encoder.`, `decoder.blocks.N.`, `segmentation_head.`).
Everything else is frozen. Adding a strategy is adding a row.

Frozen BatchNorm layers: `bn_update_frozen=True` lets them keep updating their running
statistics in training mode (what the paper's code did, since it only set
`requires_grad=False`); `False` pins them in eval mode, surviving `model.train()`. Every row
keeps the paper's behaviour (True) by default; the trial config key `bn_update_frozen`
overrides it.

`python -m trainables.strategies --json` prints every strategy with its parameter counts.
"""

from __future__ import annotations

import argparse
import json
import re
import types
from dataclasses import dataclass

from torch import nn

from trainables.models import build_model, count_params


@dataclass(frozen=True)
class Strategy:
    name: str
    model: str  # a key of trainables.models.MODELS
    train: tuple[str, ...]  # regexes, re.match-ed against parameter names
    pretrained: bool = True  # does encoder_weights apply (the baseline starts from scratch)
    bn_update_frozen: bool = True  # the paper's behaviour; see the module docstring


_ALL = (r".*",)
HEAD = r"segmentation_head\."

STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in [
        Strategy("baseline", "unet_baseline", _ALL, pretrained=False),  # U-Net from scratch
        Strategy("decoder", "unet_mobilenet_v2", (r"decoder\.",)),
        Strategy("encoder", "unet_mobilenet_v2", (r"encoder\.",)),
        Strategy("decoder_0", "unet_mobilenet_v2", (r"decoder\.blocks\.0\.",)),
        Strategy("decoder_0_1", "unet_mobilenet_v2", (r"decoder\.blocks\.[01]\.",)),
        Strategy("decoder_0_1_2", "unet_mobilenet_v2", (r"decoder\.blocks\.[012]\.",)),
        Strategy("decoder_2_3_4", "unet_mobilenet_v2", (r"decoder\.blocks\.[234]\.",)),
        Strategy("decoder_4", "unet_mobilenet_v2", (r"decoder\.blocks\.4\.",)),
        Strategy("all", "unet_mobilenet_v2", _ALL),  # everything trains (not in the paper)
    ]
}
PAPER_STRATEGIES = [
    "baseline",
    "decoder",
    "encoder",
    "decoder_0",
    "decoder_0_1",
    "decoder_0_1_2",
    "decoder_2_3_4",
    "decoder_4",
]


def get_strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise KeyError(f"unknown strategy {name!r}; valid: {sorted(STRATEGIES)}")
    return STRATEGIES[name]


@dataclass(frozen=True)
class AppliedStrategy:
    trainable_params: int
    total_params: int
    param_groups: list  # for torch.optim: [{"params": [...]}]
    frozen_bn_modules: tuple[str, ...]  # BatchNorm layers pinned to eval mode


def _eval_only_train(self: nn.Module, mode: bool = True) -> nn.Module:
    return nn.Module.train(self, False)


def apply_strategy(
    model: nn.Module,
    strategy: Strategy,
    *,
    train_head: bool = False,
    bn_update_frozen: bool | None = None,
    verbose: bool = True,
) -> AppliedStrategy:
    """Freeze every parameter the strategy does not train.

    Args:
        model: a network built for `strategy.model`.
        train_head: also train `segmentation_head.*` (a no-op where everything trains).
        bn_update_frozen: override the strategy's BatchNorm choice (None keeps it).

    Returns:
        counts and the optimizer's parameter groups.

    Raises:
        ValueError: a pattern matches no parameter (a typo, or the wrong network).
    """
    # A strategy that trains everything trains its head already (the baseline has none by
    # that name): train_head adds nothing there.
    extra = [HEAD] if train_head and strategy.train != _ALL else []
    patterns = list(strategy.train) + extra
    matched = {p: 0 for p in patterns}
    trainable = []
    for name, param in model.named_parameters():
        hits = [p for p in patterns if re.match(p, name)]
        for p in hits:
            matched[p] += 1
        param.requires_grad_(bool(hits))
        if hits:
            trainable.append(param)
    unmatched = [p for p, n in matched.items() if n == 0]
    if unmatched:
        raise ValueError(
            f"strategy {strategy.name!r}: pattern(s) {unmatched} match no parameter of "
            f"{type(model).__name__}"
        )

    keep_updating = strategy.bn_update_frozen if bn_update_frozen is None else bn_update_frozen
    frozen_bn = []
    if not keep_updating:
        for name, module in model.named_modules():
            params = list(module.parameters(recurse=False))
            is_bn = isinstance(module, nn.modules.batchnorm._BatchNorm)
            if is_bn and params and not any(p.requires_grad for p in params):
                # An instance-level train() that always means eval: nn.Module.train() of
                # the parent calls it, so the choice survives model.train().
                module.train = types.MethodType(_eval_only_train, module)
                module.eval()
                frozen_bn.append(name)

    result = AppliedStrategy(
        trainable_params=sum(p.numel() for p in trainable),
        total_params=count_params(model),
        param_groups=[{"params": trainable}],
        frozen_bn_modules=tuple(frozen_bn),
    )
    if verbose:
        print(
            f"strategy {strategy.name}: {result.trainable_params:,} trainable of "
            f"{result.total_params:,} parameters ({len(frozen_bn)} BatchNorm layers pinned)"
        )
    return result


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
        print(f"{'strategy':<15}{'model':<19}{'trainable':>12}{'total':>12}")
        for r in rows:
            print(
                f"{r['name']:<15}{r['model']:<19}{r['trainable_params']:>12,}{r['total_params']:>12,}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
