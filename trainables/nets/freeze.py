"""Freeze masks: which parts of a U-Net train, as one flag per part, with a readable name.

A smp U-Net has three kinds of parts:
- `enc0` .. `enc4`: the encoder's stages, one per output stride (2, 4, 8, 16, 32), found from
  the encoder itself (so any smp encoder works): a probe forward pass records the output
  stride of every block it runs (`features.14`, `layer4`, `_blocks.9`), and a parameter belongs
  to the stage its outermost such block ends in;
- `dec0` .. `dec4`: the decoder's blocks (`decoder.blocks.N`, from the deepest);
- `head`: the segmentation head.
Parameters the encoder's forward never runs (EfficientNet's `_conv_head`) never train.
A mask's name lists its trainable parts, ranges folded: `mobilenet_v2:enc3-4+dec0-4+head`. The
from-scratch baseline U-Net is the network `unet64`, whose only part is `all`.
"""

from __future__ import annotations

import functools
import math
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

# torch and the networks are imported where a mask meets a network, not at import: the search
# driver names, parses and validates masks without loading torch (seconds per start).

ENCODER_STAGES = 5
DECODER_BLOCKS = 5
BASELINE = "unet64"
# Encoder parameters its forward never uses (EfficientNet's classifier-side conv): always frozen,
# counted in the network's total only.
UNUSED = "unused"
PART_ORDER = [f"enc{i}" for i in range(ENCODER_STAGES)]
PART_ORDER += [f"dec{i}" for i in range(DECODER_BLOCKS)] + ["head"]
_NAME = re.compile(r"^(?P<net>[\w.-]+):(?P<parts>[\w+-]+)$")


def encoder_stage_of(model: nn.Module, probe_size: int = 256) -> dict[str, str]:
    """{parameter name: 'encK'} for the `encoder.*` parameters of a smp model."""
    import torch

    encoder = model.encoder
    strides: dict[str, int] = {}
    hooks = []

    def record(name):
        def hook(_module, _inputs, output):
            if torch.is_tensor(output) and output.dim() == 4 and min(output.shape[-2:]) > 1:
                strides[name] = probe_size // output.shape[-1]

        return hook

    for name, module in encoder.named_modules():
        hooks.append(module.register_forward_hook(record(name)))
    was_training = encoder.training
    try:
        encoder.eval()
        with torch.no_grad():
            encoder(torch.zeros(1, 3, probe_size, probe_size))
    finally:
        for hook in hooks:
            hook.remove()
        encoder.train(was_training)
    stages = {}
    for param_name, _ in encoder.named_parameters():
        pieces = param_name.split(".")[:-1]
        # The outermost module around the parameter that the forward runs as a whole: a block
        # (`features.14`, `_blocks.9`, `layer4`), so a block sits in the stage it ends in.
        owners = [".".join(pieces[: i + 1]) for i in range(len(pieces))]
        owner = next((name for name in owners if name in strides), None)
        if owner is None:  # never run by the encoder's forward (EfficientNet's head)
            stages[f"encoder.{param_name}"] = UNUSED
            continue
        stage = min(ENCODER_STAGES - 1, max(0, int(math.log2(strides[owner])) - 1))
        stages[f"encoder.{param_name}"] = f"enc{stage}"
    return stages


def part_of(name: str, stages: dict[str, str]) -> str:
    """The part a parameter belongs to ('enc2', 'dec0', 'head'); ValueError for others."""
    if name in stages:
        return stages[name]
    match = re.match(r"decoder\.blocks\.(\d+)\.", name)
    if match:
        return f"dec{match.group(1)}"
    if name.startswith("segmentation_head."):
        return "head"
    raise ValueError(f"parameter {name} belongs to no freeze-mask part")


def _check_baseline(network: str, parts: set) -> None:
    if network == BASELINE and parts != {"all"}:
        raise ValueError(f"{BASELINE} trains as a whole: its only mask is '{BASELINE}:all'")


def mask_name(network: str, parts) -> str:
    """`mobilenet_v2:enc3-4+dec0-4+head` from a network and its trainable parts."""
    parts = set(parts)
    if network == BASELINE or parts == {"all"}:
        return f"{network}:all"
    unknown = parts - set(PART_ORDER)
    if unknown or not parts:
        raise ValueError(f"mask parts {sorted(unknown) or '(none)'} invalid; valid: {PART_ORDER}")
    pieces = []
    for prefix, count in (("enc", ENCODER_STAGES), ("dec", DECODER_BLOCKS)):
        on = [i for i in range(count) if f"{prefix}{i}" in parts]
        pieces += [f"{prefix}{a}" if a == b else f"{prefix}{a}-{b}" for a, b in _runs(on)]
    if "head" in parts:
        pieces.append("head")
    return f"{network}:{'+'.join(pieces)}"


def parse_mask(name: str) -> tuple[str, frozenset[str]]:
    """(network, trainable parts) of a mask name; ValueError naming what is wrong."""
    match = _NAME.match(name)
    if not match:
        raise ValueError(f"{name!r} is not a mask name like 'mobilenet_v2:dec0-4+head'")
    parts = set()
    for piece in match["parts"].split("+"):
        found = re.fullmatch(r"(enc|dec)(\d)(?:-(\d))?|head|all", piece)
        if not found:
            raise ValueError(f"{name!r}: {piece!r} is not a part (encN, decN, ranges, head)")
        if piece in ("head", "all"):
            parts.add(piece)
            continue
        prefix, first, last = found.group(1), int(found.group(2)), int(found.group(3) or found[2])
        parts |= {f"{prefix}{i}" for i in range(first, last + 1)}
    if "all" in parts and parts != {"all"}:
        raise ValueError(f"{name!r}: 'all' stands alone")
    _check_baseline(match["net"], parts)
    if parts != {"all"}:
        mask_name(match["net"], parts)  # validates the parts
    return match["net"], frozenset(parts)


def safe_name(name: str) -> str:
    """A mask name as a file and run name: `mobilenet_v2_enc3-4.dec0-4.head`."""
    return name.replace(":", "_").replace("+", ".")


def _runs(values: list[int]) -> list[tuple[int, int]]:
    runs: list[list[int]] = []
    for value in values:
        if runs and value == runs[-1][1] + 1:
            runs[-1][1] = value
        else:
            runs.append([value, value])
    return [tuple(run) for run in runs]


@functools.cache
def part_sizes(network: str) -> dict[str, int]:
    """Parameters per part of a network (its weights not loaded), for counting masks."""
    from trainables.nets.models import build_model, count_params

    if network == BASELINE:
        return {"all": count_params(build_model("unet_baseline"))}
    model = build_model(f"unet_{network}")
    stages = encoder_stage_of(model)
    sizes = dict.fromkeys([*PART_ORDER, UNUSED], 0)
    for name, param in model.named_parameters():
        sizes[part_of(name, stages)] += param.numel()
    return sizes
