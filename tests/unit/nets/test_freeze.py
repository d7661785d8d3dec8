"""Freeze masks: the paper's strategies as masks with their exact trainable counts, readable and
stable names, every parameter of each encoder in exactly one part."""

from __future__ import annotations

import pytest
from helpers import PAPER_TRAINABLE

from trainables.nets.freeze import PART_ORDER, mask_name, parse_mask, part_sizes
from trainables.nets.models import ENCODERS, build_model, count_params
from trainables.nets.strategies import PAPER_STRATEGIES, apply_strategy, get_strategy


@pytest.mark.parametrize("name", PAPER_STRATEGIES)
def test_every_paper_strategy_is_a_mask_with_its_exact_count(name):
    strategy = get_strategy(name)
    network, parts = parse_mask(strategy.mask)
    assert network == ("unet64" if name == "baseline" else "mobilenet_v2")
    # The mask's name alone rebuilds the same strategy, and it trains exactly the paper's count.
    rebuilt = get_strategy(strategy.mask)
    assert (rebuilt.network, rebuilt.parts) == (strategy.network, strategy.parts)
    model = build_model(rebuilt.model, "none")
    applied = apply_strategy(model, rebuilt, verbose=False)
    assert applied.trainable_params == PAPER_TRAINABLE[name]
    assert applied.trainable_params == count_params(model, trainable_only=True)


def test_masks_are_named_readably_and_stably():
    assert get_strategy("decoder").mask == "mobilenet_v2:dec0-4"
    assert get_strategy("decoder_2_3_4").mask == "mobilenet_v2:dec2-4"
    assert get_strategy("all").mask == "mobilenet_v2:enc0-4+dec0-4+head"
    parts = {"enc4", "dec0", "dec1", "dec3", "head"}
    assert mask_name("resnet18", parts) == "resnet18:enc4+dec0-1+dec3+head"
    assert parse_mask("resnet18:enc4+dec0-1+dec3+head") == ("resnet18", frozenset(parts))
    with pytest.raises(ValueError, match=r"mask parts \['dec9'\] invalid"):
        parse_mask("mobilenet_v2:dec9")
    with pytest.raises(ValueError, match="'body' is not a part"):
        parse_mask("mobilenet_v2:body")
    with pytest.raises(KeyError, match="unknown network 'vgg11'"):
        get_strategy("vgg11:dec0-4")


@pytest.mark.parametrize("encoder", ENCODERS)
def test_every_parameter_of_each_encoder_is_in_exactly_one_part(encoder):
    sizes = part_sizes(encoder)
    model = build_model(f"unet_{encoder}", "none")
    assert sum(sizes.values()) == count_params(model)
    assert all(sizes[part] > 0 for part in PART_ORDER)  # five stages, five blocks, a head
    # Stages follow the resolution: the deepest stage holds the most encoder parameters.
    assert sizes["enc4"] == max(sizes[f"enc{i}"] for i in range(5))
