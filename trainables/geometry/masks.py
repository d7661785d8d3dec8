"""Head-mask geometry: fill official ellipse outlines, and measure how elliptic a mask is."""

from __future__ import annotations

import cv2
import numpy as np

# A head annotation is an ellipse; a filled mask must overlap the ellipse fitted to its outline
# at least this much. All 799 real HC18 masks score > 0.99; a square scores pi/4 = 0.785.
MIN_ELLIPSE_IOU = 0.9


def binarize(pixels: np.ndarray) -> np.ndarray:
    """bool mask from an 8-bit annotation; half the maximum separates 0/255 and 0/1 masks alike."""
    if not pixels.any():
        return np.zeros(pixels.shape, bool)
    return pixels > (int(pixels.max()) // 2)


def _fill_holes(binary: np.ndarray) -> np.ndarray:
    """binary plus every region that the outside cannot reach (4-connected flood fill)."""
    padded = np.pad(binary.astype(np.uint8) * 255, 1)
    flood = padded.copy()
    cv2.floodFill(flood, None, (0, 0), 128)
    return (flood != 128)[1:-1, 1:-1]


def _is_thin(binary: np.ndarray) -> bool:
    """True for a drawn line (<= 6 px wide) rather than a region: a 7x7 erosion removes it."""
    eroded = cv2.erode(binary.astype(np.uint8), np.ones((7, 7), np.uint8))
    return eroded.sum() < 0.05 * binary.sum()


def fill_annotation(binary: np.ndarray) -> np.ndarray:
    """Filled head mask from either a filled mask or an ellipse outline (the official format).

    A closed outline is filled by flood-filling from outside. An outline clipped by the image
    border is open, so its inside leaks; then the mask is the ellipse fitted to the outline.
    """
    if not binary.any():
        return binary
    filled = _fill_holes(binary)
    if not _is_thin(filled):
        return filled
    points = np.argwhere(binary)[:, ::-1].astype(np.float32)  # (x, y)
    if len(points) < 5:
        return filled
    ellipse_mask = np.zeros(binary.shape, np.uint8)
    cv2.ellipse(ellipse_mask, cv2.fitEllipse(points), 1, thickness=-1)
    return ellipse_mask.astype(bool) | binary


def ellipse_iou(mask: np.ndarray) -> float:
    """IoU of a filled mask with the ellipse fitted to its largest region's outline.

    Outline points on the image border are left out of the fit: a head cut off by the border is
    still an ellipse, and the straight cut is not part of it.
    """
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return 0.0
    points = max(contours, key=cv2.contourArea).reshape(-1, 2)
    height, width = mask.shape
    inside = (points[:, 0] > 0) & (points[:, 1] > 0)
    inside &= (points[:, 0] < width - 1) & (points[:, 1] < height - 1)
    points = points[inside] if inside.sum() >= 5 else points
    if len(points) < 5:
        return 0.0
    fitted = np.zeros(mask.shape, np.uint8)
    cv2.ellipse(fitted, cv2.fitEllipse(points.astype(np.float32)), 1, thickness=-1)
    fitted_bool, mask_bool = fitted.astype(bool), mask.astype(bool)
    union = np.logical_or(fitted_bool, mask_bool).sum()
    return float(np.logical_and(fitted_bool, mask_bool).sum() / union) if union else 0.0
