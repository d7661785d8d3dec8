"""From the network's scores to the head mask: flip test-time augmentation, threshold, and
post-processing (the trial config's `tta` and `postprocess`).

Post-processing modes (`POSTPROCESS`):
- `none`: the thresholded scores as they are.
- `largest`: the largest 8-connected component, its holes filled (spurious blobs and holes go).
- `ellipse`: the filled ellipse fitted to the largest component's outer boundary (the head is an
  ellipse and HC18's reference is one). The fit is `ellipse.fit_ellipse_px` in the mask's own
  frame; a pixel belongs to the ellipse when its centre lies inside it (an exact rasterisation).
  When no ellipse can be fitted (fewer than 5 boundary points) the largest component is kept.

Evaluation computes its metrics on both the raw and the post-processed mask in one pass
(`trainables.evaluation.metrics.MetricAccumulator`), so the gain needs no second run.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np
import torch

from trainables.geometry.ellipse import fit_ellipse_px

POSTPROCESS = ("none", "largest", "ellipse")


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of an HxW mask with its holes filled (bool, HxW)."""
    binary = np.ascontiguousarray(mask, dtype=np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if count < 2:
        return np.zeros(binary.shape, dtype=bool)
    component = labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    # Drawing the outer contour filled fills the holes; the 1 px pad makes border pixels part
    # of a closed contour, and the offset maps it back.
    padded = np.pad(component, 1).astype(np.uint8)
    contours, _ = cv2.findContours(
        padded, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE, offset=(-1, -1)
    )
    filled = cv2.drawContours(np.zeros_like(binary), contours, -1, 1, thickness=cv2.FILLED)
    return filled.astype(bool) | component


def ellipse_mask(shape_hw, cx: float, cy: float, a: float, b: float, angle: float) -> np.ndarray:
    """The filled ellipse as an HxW bool mask: pixels whose centre (x=column, y=row) lies inside;
    semi-axis `a` along `angle` (radians from +x towards +y)."""
    out = np.zeros(shape_hw[:2], dtype=bool)
    cos, sin = math.cos(angle), math.sin(angle)
    # Only the ellipse's bounding box is tested (~4x fewer pixels than the image at HC18 sizes).
    half_x, half_y = math.hypot(a * cos, b * sin), math.hypot(a * sin, b * cos)
    x0, x1 = max(0, math.floor(cx - half_x)), min(out.shape[1], math.ceil(cx + half_x) + 1)
    y0, y1 = max(0, math.floor(cy - half_y)), min(out.shape[0], math.ceil(cy + half_y) + 1)
    if x0 >= x1 or y0 >= y1:
        return out
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    u = (xs - cx) * cos + (ys - cy) * sin
    v = -(xs - cx) * sin + (ys - cy) * cos
    out[y0:y1, x0:x1] = (u / a) ** 2 + (v / b) ** 2 <= 1
    return out


def fitted_ellipse(mask: np.ndarray) -> np.ndarray:
    """The filled ellipse fitted to the largest component (HxW bool); the largest component
    itself when no ellipse can be fitted, an empty mask for an empty one."""
    fit = fit_ellipse_px(np.asarray(mask, dtype=bool))
    if fit is None:
        return largest_component(mask)
    return ellipse_mask(np.shape(mask), *fit)


_MODES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "largest": largest_component,
    "ellipse": fitted_ellipse,
}


def postprocess_batch(masks: np.ndarray, mode: str) -> np.ndarray:
    """A [B,H,W] bool batch post-processed image by image (the batch itself for `none`)."""
    if mode not in POSTPROCESS:
        raise ValueError(f"unknown postprocess {mode!r}; valid: {list(POSTPROCESS)}")
    if mode == "none" or not len(masks):
        return masks
    return np.stack([_MODES[mode](np.asarray(m, dtype=bool)) for m in masks])


def head_masks(
    run: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, tta: bool
) -> torch.Tensor:
    """Threshold the network's scores into [B,H,W] bool masks, on the images' device.

    Args:
        run: the network on a batch [B,1,H,W] -> logits [B,1,H,W].
        images: the batch, already the network's input.
        tta: also run the horizontally flipped batch, flip its scores back, and average the two
            probabilities before thresholding at 0.5 (the head has no preferred side).
    Returns:
        The masks (probability > 0.5, i.e. logit > 0 without TTA).
    """
    logits = run(images)[:, 0].float()
    if not tta:
        return logits > 0
    flipped = run(torch.flip(images, dims=[-1]))[:, 0].float()
    probability = (torch.sigmoid(logits) + torch.sigmoid(torch.flip(flipped, dims=[-1]))) / 2
    return probability > 0.5
