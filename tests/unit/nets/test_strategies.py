"""Contract tests over the strategy table: counts from the paper, freezing behaviour."""

import pytest
import torch
from helpers import PAPER_TRAINABLE
from torch import nn

from trainables.core.errors import WeightsError
from trainables.nets.models import UNetBaseline, build_model, count_params
from trainables.nets.strategies import STRATEGIES, apply_strategy, get_strategy

EXPECTED_TRAINABLE = {**PAPER_TRAINABLE, "all": 6_628_945}


@pytest.fixture(scope="module")
def models():
    return {name: build_model(name, "none") for name in ("unet_baseline", "unet_mobilenet_v2")}


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_trainable_counts_match_the_paper(name):
    strategy = get_strategy(name)
    model = build_model(strategy.model, "none")
    applied = apply_strategy(model, strategy, verbose=False)
    assert applied.trainable_params == EXPECTED_TRAINABLE[name]
    assert applied.trainable_params == count_params(model, trainable_only=True)
    assert applied.total_params == (31_037_633 if name == "baseline" else 6_628_945)


def test_network_sizes(models):
    assert count_params(models["unet_baseline"]) == 31_037_633
    mobilenet = models["unet_mobilenet_v2"]
    assert count_params(mobilenet) == 6_628_945
    assert count_params(mobilenet.encoder) == 2_223_872
    blocks = [count_params(b) for b in mobilenet.decoder.blocks]
    assert blocks == [3_761_152, 479_744, 124_672, 32_384, 6_976]
    assert count_params(mobilenet.segmentation_head) == 145


def test_train_head_adds_the_head():
    strategy = get_strategy("decoder_4")
    model = build_model(strategy.model, "none")
    applied = apply_strategy(model, strategy, train_head=True, verbose=False)
    assert applied.trainable_params == 6_976 + 145


@pytest.mark.parametrize("name", ["baseline", "all"])
def test_train_head_is_a_no_op_where_everything_trains(name):
    # A search with train_head=true runs the baseline too: it must not fail there.
    strategy = get_strategy(name)
    model = build_model(strategy.model, "none")
    applied = apply_strategy(model, strategy, train_head=True, verbose=False)
    assert applied.trainable_params == applied.total_params


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_runs_forward_and_backward_on_tiny_inputs(name):
    strategy = get_strategy(name)
    model = build_model(strategy.model, "none")
    applied = apply_strategy(model, strategy, verbose=False)
    optimizer = torch.optim.Adam(applied.param_groups, lr=1e-3)
    x = torch.rand(2, 3, 64, 64)
    frozen_before = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    logits = model(x)
    assert logits.shape == (2, 1, 64, 64)
    nn.functional.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits)).backward()
    optimizer.step()
    for n, p in model.named_parameters():
        if n in frozen_before:
            assert torch.equal(p, frozen_before[n]), f"frozen parameter {n} changed"


def test_frozen_batchnorm_stats_pinned_and_survive_train():
    strategy = get_strategy("decoder")
    model = build_model(strategy.model, "none")
    applied = apply_strategy(model, strategy, bn_update_frozen=False, verbose=False)
    assert applied.frozen_bn_modules and all(
        m.startswith("encoder.") for m in applied.frozen_bn_modules
    )
    model.train()
    bn_name = applied.frozen_bn_modules[0]
    bn = dict(model.named_modules())[bn_name]
    assert not bn.training
    before = bn.running_mean.clone()
    model(torch.rand(2, 3, 64, 64) * 5)
    assert torch.equal(bn.running_mean, before)
    # The decoder's BatchNorm trains and updates.
    assert dict(model.named_modules())["decoder.blocks.0.conv1.1"].training


def test_paper_behaviour_keeps_updating_frozen_batchnorm():
    strategy = get_strategy("decoder")
    assert strategy.bn_update_frozen is True
    model = build_model(strategy.model, "none")
    apply_strategy(model, strategy, verbose=False)
    model.train()
    bn = model.encoder.features[0][1]
    before = bn.running_mean.clone()
    model(torch.rand(2, 3, 64, 64) * 5)
    assert not torch.equal(bn.running_mean, before)


def test_pattern_matching_nothing_fails_loudly():
    strategy = get_strategy("decoder")
    with pytest.raises(ValueError, match="match no parameter"):
        apply_strategy(UNetBaseline(), strategy, verbose=False)


def test_unknown_strategy_lists_valid_ones():
    with pytest.raises(KeyError, match="decoder_0_1"):
        get_strategy("decodr")


def test_encoder_checkpoint_roundtrip_and_errors(tmp_path):
    source = build_model("unet_mobilenet_v2", "none")
    torch.save({"model": source.state_dict()}, tmp_path / "trial.pt")
    torch.save(source.encoder.state_dict(), tmp_path / "encoder.pt")
    for file in ("trial.pt", "encoder.pt"):
        model = build_model("unet_mobilenet_v2", str(tmp_path / file))
        for (n, a), b in zip(
            model.encoder.state_dict().items(), source.encoder.state_dict().values(), strict=True
        ):
            assert torch.equal(a, b), n
    torch.save({"something": torch.zeros(3)}, tmp_path / "wrong.pt")
    with pytest.raises(WeightsError, match="does not fit"):
        build_model("unet_mobilenet_v2", str(tmp_path / "wrong.pt"))
    with pytest.raises(WeightsError, match="not a file"):
        build_model("unet_mobilenet_v2", str(tmp_path / "missing.pt"))


def test_failed_imagenet_download_says_what_to_do(monkeypatch):
    import segmentation_models_pytorch as smp

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(smp, "Unet", offline)
    with pytest.raises(WeightsError, match="encoder_weights to a checkpoint path"):
        build_model("unet_mobilenet_v2", "imagenet")
