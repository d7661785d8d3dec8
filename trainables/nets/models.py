"""The networks (the from-scratch baseline, smp U-Nets) and how encoder weights reach them.

- `unet_baseline`: Ronneberger's U-Net as the paper trained it from scratch (features
  64-128-256-512, a 1024-channel bottleneck, BatchNorm, transposed-conv upsampling): 31,037,633
  parameters for 3 input channels and 1 output.
- `unet_<encoder>`: `smp.Unet(encoder, classes=1)` for an encoder of `ENCODERS`:
  `unet_mobilenet_v2` (the paper's, 6,628,945 parameters), `unet_resnet18`,
  `unet_efficientnet-b0`.
"""

from __future__ import annotations

import functools
from pathlib import Path

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import nn

from trainables.core.errors import WeightsError
from trainables.nets.encoders import ENCODERS


class DoubleConv(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class UNetBaseline(nn.Module):
    """The from-scratch baseline of the paper."""

    def __init__(self, in_channels: int = 3, out_channels: int = 1, features=(64, 128, 256, 512)):
        super().__init__()
        self.downs = nn.ModuleList()
        self.ups = nn.ModuleList()
        self.pool = nn.MaxPool2d(2, 2)
        for feature in features:
            self.downs.append(DoubleConv(in_channels, feature))
            in_channels = feature
        for feature in reversed(features):
            self.ups.append(nn.ConvTranspose2d(feature * 2, feature, 2, stride=2))
            self.ups.append(DoubleConv(feature * 2, feature))
        self.bottleneck = DoubleConv(features[-1], features[-1] * 2)
        self.final_conv = nn.Conv2d(features[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for down in self.downs:
            x = down(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for up, conv, skip in zip(self.ups[0::2], self.ups[1::2], reversed(skips), strict=True):
            x = up(x)
            if x.shape[-2:] != skip.shape[-2:]:  # odd sizes: match the skip connection
                x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = conv(torch.cat((skip, x), dim=1))
        return self.final_conv(x)


def smp_unet(encoder: str, encoder_weights: str) -> nn.Module:
    """`smp.Unet(encoder, classes=1)` with 'imagenet', 'none' or a checkpoint's encoder."""
    if encoder_weights in ("none", "imagenet"):
        weights = None if encoder_weights == "none" else "imagenet"
        try:
            return smp.Unet(encoder, encoder_weights=weights, classes=1)
        except Exception as err:  # any download failure: never fall back to random weights
            raise WeightsError(
                f"could not load ImageNet weights for {encoder} ({type(err).__name__}: {err}). "
                "Offline? Set encoder_weights to a checkpoint path (an earlier trial's best.pt or "
                "a pretrain-stage checkpoint) or to 'none' to train from random weights."
            ) from err
    model = smp.Unet(encoder, encoder_weights=None, classes=1)
    load_encoder_checkpoint(model, encoder_weights, encoder)
    return model


def load_encoder_checkpoint(model: nn.Module, path: str | Path, encoder: str = "") -> None:
    """Load encoder weights from a whole-U-Net or encoder-only state dict (or our checkpoint).

    Raises:
        WeightsError: file missing, unreadable, or its encoder keys do not match the model.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(
            f"encoder_weights: {path} is not a file (expected 'imagenet', 'none' or a checkpoint path)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise WeightsError(f"encoder_weights: cannot read checkpoint {path}: {err}") from err
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # a FreezeFrame trial checkpoint
    if not isinstance(state, dict):
        raise WeightsError(f"encoder_weights: {path} holds no state dict")
    if any(k.startswith("encoder.") for k in state):
        state = {
            k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")
        }
    try:
        model.encoder.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise WeightsError(
            f"encoder_weights: {path} does not fit the {encoder or 'model'}'s encoder: {err}"
        ) from err


MODELS = {"unet_baseline": lambda encoder_weights: UNetBaseline()} | {
    f"unet_{encoder}": functools.partial(smp_unet, encoder) for encoder in ENCODERS
}


def build_model(name: str, encoder_weights: str = "none") -> nn.Module:
    """Build a network by name.

    Args:
        name: a key of MODELS.
        encoder_weights: 'imagenet', 'none' or a checkpoint path (ignored by the baseline,
            which the study trains from scratch).
    """
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; valid: {sorted(MODELS)}")
    return MODELS[name](encoder_weights)


def count_params(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
