"""Per-mask and per-batch wrappers of the product's scoring internals, for the tests that check
them on small hand-made masks (the product scores whole data sets with MetricAccumulator); and
`results_table`, a trial's per-image results made from chosen Dice values, for report tests."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from trainables.evaluation.metrics import _per_image, _pixel_counts, _pooled
from trainables.geometry.distances import boundary_distances_mm
from trainables.geometry.postprocess import _MODES, POSTPROCESS


def per_image_scores(pred, target) -> dict[str, torch.Tensor]:
    """Pixel accuracy, Dice and IoU of each image of [B,H,W] bool masks (torch or numpy):
    float64 CPU tensors of shape [B]. Both masks empty gives Dice = IoU = 1."""
    return {k: torch.from_numpy(v) for k, v in _per_image(_pixel_counts(pred, target)).items()}


def batch_pooled_scores(pred, target) -> dict[str, float]:
    """The paper's Dice/IoU: every pixel of the batch pooled into one score (an all-empty batch
    scores Dice = IoU = 0, as the paper code's formula gives)."""
    return _pooled(_pixel_counts(pred, target))


def postprocess_mask(mask: np.ndarray, mode: str) -> np.ndarray:
    """One HxW bool mask post-processed by `mode` (one of `POSTPROCESS`)."""
    if mode not in POSTPROCESS:
        raise ValueError(f"unknown postprocess {mode!r}; valid: {list(POSTPROCESS)}")
    mask = np.asarray(mask, dtype=bool)
    return mask.copy() if mode == "none" else _MODES[mode](mask)


def hausdorff_mm(pred: np.ndarray, target: np.ndarray, pixel_size_mm: float, scale_xy) -> float:
    """Symmetric Hausdorff distance between the two masks' boundaries, in mm."""
    return boundary_distances_mm(pred, target, pixel_size_mm, scale_xy)["hd_mm"]


WIDTH, HEIGHT = 800, 540  # the HC18 image size


def ellipse_mask(cx, cy, a, b, angle_deg, width=WIDTH, height=HEIGHT) -> np.ndarray:
    """Exact rasterisation: a pixel is head when its centre lies inside the ellipse (semi-axis a
    along angle_deg, clockwise from +x in image coordinates)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    theta = math.radians(angle_deg)
    u = (xs - cx) * math.cos(theta) + (ys - cy) * math.sin(theta)
    v = -(xs - cx) * math.sin(theta) + (ys - cy) * math.cos(theta)
    return (u / a) ** 2 + (v / b) ** 2 <= 1


def results_table(filenames: list[str], dice: np.ndarray) -> pd.DataFrame:
    """A trial's per-image test results (as `per_image.csv` holds them) whose every metric follows
    its Dice: IoU from Dice, distances and HC error growing as Dice falls, on a 170 mm head."""
    hd = 0.02 + 5 * (1 - dice)
    return pd.DataFrame(
        {
            "filename": filenames,
            "dice": dice,
            "iou": dice / (2 - dice),
            "pixel_accuracy": 1 - (1 - dice) / 500,
            "hd_mm": hd,
            "hd95_mm": hd / 2,
            "hc_pred_mm": 170 + 10 * (1 - dice),
            "hc_reference_mm": 170.0,
            "hc_abs_diff_mm": 10 * (1 - dice),
            "hc_signed_diff_mm": 10 * (1 - dice),
            "empty_prediction": False,
        }
    )
