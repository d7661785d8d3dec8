"""Fine-tuning strategies: which parts of the network train, as rows of one table.

A strategy is a freeze mask (`trainables.nets.freeze`): the network (`mobilenet_v2`, another
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

`python -m trainables.strategies --json` lists every strategy with its mask and parameter counts.
"""

from __future__ import annotations

import functools
import types
from dataclasses import dataclass
from typing import TYPE_CHECKING

from trainables.nets.encoders import ENCODERS
from trainables.nets.freeze import (
    BASELINE,
    PART_ORDER,
    encoder_stage_of,
    mask_name,
    parse_mask,
    part_of,
    part_sizes,
)

if TYPE_CHECKING:  # torch is imported where a strategy meets a network, not at import
    from torch import nn

ENCODER, DECODER = frozenset(PART_ORDER[:5]), frozenset(PART_ORDER[5:10])


@dataclass(frozen=True)
class Strategy:
    name: str
    network: str  # 'mobilenet_v2' (an smp encoder of encoders.ENCODERS) or 'unet64'
    parts: frozenset[str]  # trainable parts (freeze.PART_ORDER), or {'all'}
    pretrained: bool = True  # does encoder_weights apply (the baseline starts from scratch)
    bn_update_frozen: bool = True  # the paper's behaviour; see the module docstring

    @property
    def model(self) -> str:
        """The key of models.MODELS that builds the network."""
        return "unet_baseline" if self.network == BASELINE else f"unet_{self.network}"

    @property
    def mask(self) -> str:
        return mask_name(self.network, self.parts)

    @property
    def trains_everything(self) -> bool:
        return self.parts == {"all"} or self.parts >= ENCODER | DECODER | {"head"}

    def trainable_parts(self, train_head: bool = False) -> frozenset[str]:
        """The parts that train (`{'all'}` for the baseline); never an encoder's unused part."""
        if self.network == BASELINE:
            return frozenset({"all"})
        parts = ENCODER | DECODER | {"head"} if self.trains_everything else self.parts
        return frozenset(parts | ({"head"} if train_head else set()))

    def counts(self, train_head: bool = False) -> tuple[int, int]:
        """(trainable, total) parameters, counted without building the network."""
        sizes = part_sizes(self.network)
        trainable = sum(sizes[part] for part in self.trainable_parts(train_head))
        return trainable, sum(sizes.values())


def _row(name: str, parts, network: str = "mobilenet_v2", **kwargs) -> Strategy:
    return Strategy(name, network, frozenset(parts), **kwargs)


def _blocks(*indices: int) -> set[str]:
    return {f"dec{i}" for i in indices}


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in [
        _row("baseline", {"all"}, BASELINE, pretrained=False),  # U-Net from scratch
        _row("decoder", DECODER),
        _row("encoder", ENCODER),
        _row("decoder_0", _blocks(0)),
        _row("decoder_0_1", _blocks(0, 1)),
        _row("decoder_0_1_2", _blocks(0, 1, 2)),
        _row("decoder_2_3_4", _blocks(2, 3, 4)),
        _row("decoder_4", _blocks(4)),
        _row("all", ENCODER | DECODER | {"head"}),  # everything trains (not in the paper)
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
    """A named row, or the strategy a mask name describes (`mobilenet_v2:dec0-4+enc4`)."""
    if name in STRATEGIES:
        return STRATEGIES[name]
    try:
        network, parts = parse_mask(name)
    except ValueError as err:
        raise KeyError(
            f"unknown strategy {name!r}; valid: {sorted(STRATEGIES)} or a freeze mask such "
            f"as 'mobilenet_v2:enc4+dec0-4' ({err})"
        ) from None
    if network != BASELINE and network not in ENCODERS:
        raise KeyError(f"strategy {name!r}: unknown network {network!r}; valid: {ENCODERS}")
    return Strategy(mask_name(network, parts), network, parts, pretrained=network != BASELINE)


@dataclass(frozen=True)
class AppliedStrategy:
    trainable_params: int
    total_params: int
    param_groups: list  # for torch.optim: [{"params": [...]}]
    frozen_bn_modules: tuple[str, ...]  # BatchNorm layers pinned to eval mode


@functools.cache
def _stages(network: str) -> dict[str, str]:
    """Encoder parameter name -> stage, per network (found once, on a fresh model)."""
    from trainables.nets.models import build_model

    return encoder_stage_of(build_model(f"unet_{network}"))


def _eval_only_train(self: nn.Module, mode: bool = True) -> nn.Module:
    from torch import nn

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
        ValueError: a part matches no parameter (the wrong network).
    """
    from torch import nn

    from trainables.nets.models import count_params

    trainable = []
    if strategy.network == BASELINE:  # the from-scratch U-Net trains as a whole
        for param in model.parameters():
            param.requires_grad_(True)
            trainable.append(param)
    else:
        if not hasattr(model, "encoder") or not hasattr(model, "segmentation_head"):
            raise ValueError(
                f"strategy {strategy.name!r}: parts {sorted(strategy.parts)} match no parameter "
                f"of {type(model).__name__}"
            )
        parts = strategy.trainable_parts(train_head)
        stages, matched = _stages(strategy.network), set()
        for name, param in model.named_parameters():
            part = part_of(name, stages)
            param.requires_grad_(part in parts)
            if part in parts:
                trainable.append(param)
                matched.add(part)
        if parts - matched:
            raise ValueError(
                f"strategy {strategy.name!r}: part(s) {sorted(parts - matched)} match no "
                f"parameter of {type(model).__name__}"
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
