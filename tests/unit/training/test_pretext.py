"""Pretext training: masked corruption, and a restoring network that yields an encoder."""

from __future__ import annotations

import pytest
import torch

from trainables.core.config import TrialConfig
from trainables.nets.models import build_model
from trainables.training.pretext import corrupt, run_pretext


def test_masked_corruption_hides_patches_and_weights_them():
    images = torch.rand(4, 1, 64, 64)
    generator = torch.Generator().manual_seed(0)
    inputs, weight = corrupt(images, "masked", generator)
    hidden = weight == 1.0
    assert 0.3 < hidden.float().mean() < 0.9  # about MASK_RATIO of the 8 x 8 patches
    assert torch.allclose(inputs[hidden], torch.full_like(inputs[hidden], 0.5))
    assert torch.equal(inputs[~hidden], images[~hidden])
    noisy, ones = corrupt(images, "denoise", generator)
    assert torch.all(ones == 1) and not torch.equal(noisy, images)
    with pytest.raises(ValueError, match="unknown pretext method 'blur'"):
        corrupt(images, "blur", generator)


def test_pretext_training_restores_better_and_yields_an_encoder(tmp_path, sample_dir):
    from trainables.data.trial_data import load_trial_data

    cfg = TrialConfig(strategy="all", encoder_weights="none", image_size=32, epochs=3,
                      batch_size=4, lr=1e-3, num_threads=1)  # fmt: skip
    images = load_trial_data(cfg).train.images  # no masks are passed: labels cannot be read
    metrics = run_pretext(cfg, tmp_path, images, "masked", verbose=False)
    losses = [record["train_loss"] for record in metrics["history"]]
    assert losses[-1] < losses[0], losses
    assert metrics["pretext_images"] == len(images)
    model = build_model("unet_mobilenet_v2", str(tmp_path / "best.pt"))  # its encoder loads
    state = torch.load(tmp_path / "best.pt", weights_only=True)["model"]
    first = next(k for k in state if k.startswith("encoder."))
    assert torch.equal(model.state_dict()[first], state[first])
