"""The training losses a trial config's `loss` names: `bce`, or `dice_bce` (BCE plus Dice)."""

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
