"""The training loop in fp16 with a GradScaler, on the CPU."""

from __future__ import annotations

import torch

from trainables.core.config import TrialConfig
from trainables.training.loop import train_one_epoch
from trainables.training.setup import build_training


def test_an_fp16_step_with_a_grad_scaler_runs_on_the_cpu_and_lowers_the_loss(sample_dir):
    cfg = TrialConfig(
        encoder_weights="none", image_size=32, batch_size=4, amp="fp16", bn_momentum=None,
        lr=1e-3, num_threads=1,
    )  # fmt: skip
    training = build_training(cfg, verbose=False)
    assert training.precision == "fp16" and training.scaler is not None
    assert training.autocast_dtype == torch.float16
    losses = [train_one_epoch(training, epoch)["train_loss"] for epoch in range(1, 5)]
    assert losses[-1] < losses[0], losses
    assert training.scaler.get_scale() > 0
