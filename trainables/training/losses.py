"""[from trial.py]
One trial: a pure function turns a resolved config into model, optimizer and data; a loop
trains it epoch by epoch, evaluates on validation, checkpoints, and tests the best epoch once.

The loop stays on the device: the training set is uploaded once as uint8, batches are indexed
there, the loss is accumulated as a tensor and read once per epoch (no host sync per step).
"""

from __future__ import annotations

import segmentation_models_pytorch as smp
import torch
from torch import nn


class DiceBCELoss(nn.Module):
    def __init__(self):
        super().__init__()
        self.bce = nn.BCEWithLogitsLoss()
        self.dice = smp.losses.DiceLoss(mode="binary", from_logits=True)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.bce(logits, target) + self.dice(logits, target)


LOSSES = {"bce": nn.BCEWithLogitsLoss, "dice_bce": DiceBCELoss}

