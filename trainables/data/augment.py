"""The paper's training augmentation, on two backends that sample the same distribution.

Per image: a rotation by an angle drawn uniformly from [-rotate_deg, +rotate_deg] (always applied,
bilinear for the image, nearest for the mask, zeros outside the field of view), then a horizontal
flip with probability hflip_p and a vertical flip with probability vflip_p. Images are scaled to
[0, 1] (albumentations' Normalize with mean 0, std 1, as the paper's code did) and the grayscale
channel is replicated to the 3 channels a pretrained encoder expects.

- `albumentations` on the CPU, one image at a time (the reference, as in the paper);
- `torch` on whatever device holds the batch: one `affine_grid` + `grid_sample` per batch, so a
  GPU never waits for the host.
"""

from __future__ import annotations

import math
import random

import albumentations as A
import cv2
import numpy as np
import torch
import torch.nn.functional as F


def albumentations_transform(
    rotate_deg: float, hflip_p: float, vflip_p: float, seed: int | None = None
) -> A.Compose:
    """The paper's Rotate + HorizontalFlip + VerticalFlip; reproducible when seeded."""
    transform = A.Compose(
        [
            A.Rotate(
                limit=rotate_deg,
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST,
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                fill_mask=0,
                p=1.0,
            ),
            A.HorizontalFlip(p=hflip_p),
            A.VerticalFlip(p=vflip_p),
        ]
    )
    if seed is not None:
        # Compose(seed=...) gives every transform its own generator seeded alike, so all draw
        # the same numbers: vflip implied hflip and the flips fixed the angle's sign. One
        # shared stream keeps the draws independent, as in the (unseeded) paper's code.
        transform.set_random_state(np.random.default_rng(seed), random.Random(seed))
    return transform


def augment_albumentations(
    transform: A.Compose, images: np.ndarray, masks: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Augment uint8 [B,H,W] images and masks image by image; returns uint8 arrays."""
    out_images, out_masks = np.empty_like(images), np.empty_like(masks)
    for i in range(len(images)):
        result = transform(image=images[i], mask=masks[i])
        out_images[i], out_masks[i] = result["image"], result["mask"]
    return out_images, out_masks


def augment_torch(
    images: torch.Tensor,
    masks: torch.Tensor,
    rotate_deg: float,
    hflip_p: float,
    vflip_p: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment a batch on its own device.

    Args:
        images: float [B,1,H,W] in [0, 1].
        masks: float [B,1,H,W] in {0, 1}.
        generator: a generator on the batch's device, for reproducible draws.

    Returns:
        the augmented (images, masks), same shapes and dtype.
    """
    batch, device = images.shape[0], images.device
    draw = torch.rand(batch, 3, device=device, generator=generator)
    angle = (draw[:, 0] * 2 - 1) * math.radians(rotate_deg)
    # Flips are a sign on the sampling grid's axes, so one grid_sample does all three steps.
    sx = torch.where(draw[:, 1] < hflip_p, -1.0, 1.0)
    sy = torch.where(draw[:, 2] < vflip_p, -1.0, 1.0)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # Output pixel p samples the input at R(-angle) F p (F = flips, normalised coordinates).
    theta = torch.zeros(batch, 2, 3, device=device, dtype=images.dtype)
    theta[:, 0, 0], theta[:, 0, 1] = cos * sx, sin * sy
    theta[:, 1, 0], theta[:, 1, 1] = -sin * sx, cos * sy
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    masks = F.grid_sample(masks, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return images, masks


def to_network_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 [B,H,W] or float [B,1,H,W] -> float [B,3,H,W] in [0, 1]."""
    if images.dtype == torch.uint8:
        images = images.unsqueeze(1).float().div_(255.0)
    return images.expand(-1, 3, -1, -1)
