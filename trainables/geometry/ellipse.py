"""Head circumference (HC) from a head mask: fit an ellipse, take its Ramanujan perimeter.

Conventions (those of an HC18 challenge submission, `filename,center_x_mm,center_y_mm,
semi_axes_a_mm,semi_axes_b_mm,angle_rad`):
- Coordinates are in the ORIGINAL image frame, x to the right, y down, origin at the CENTRE of
  the top-left pixel (pixel (row i, column j) has centre (x=j, y=i)), times the pixel size.
- `semi_axes_a_mm` is the semi-major axis and lies along `angle_rad`; `semi_axes_b_mm` is the
  semi-minor axis. `angle_rad` is in [0, pi), measured from +x towards +y (clockwise as the image
  is displayed), as cv2.fitEllipse reports its angle.

Which boundary is fitted, on evidence from the 799 HC18 ground-truth masks (filled):
- pixel centres of the boundary pixels (cv2 CHAIN_APPROX_NONE): HC is 0.97 mm too large on average
  (MAE 0.97 mm); on exact rasterisations it is 0.5 px too small radially (-0.6 % at 100x60 px).
- pixel EDGES between mask and background (used here): exact on analytic rasterisations (within
  0.3 % from a 30 px semi-major axis, 0.1 % from 50 px; HC18 heads are ~100 px and more), but
  +1.38 mm on HC18 (MAE 1.38 mm): the HC18 masks reach 1.58 px (median, std 0.035 px) beyond
  the reference ellipse, because the challenge's annotation outline (about 3 px thick) was
  filled together with its line. Subtracting `HC18_MASK_OUTSET_PX` (`trainables.core.config`)
  from both semi-axes brings the MAE to 0.015 mm (mean signed +0.003 mm).
A network trained on those masks learns the same outset, so HC measured on its predictions
needs the same correction; `measure_mask` defaults to no correction (measure the mask as drawn).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class EllipseMeasurement:
    """An ellipse in mm in the original image frame (conventions: module docstring)."""

    hc_mm: float
    center_x_mm: float
    center_y_mm: float
    semi_axes_a_mm: float
    semi_axes_b_mm: float
    angle_rad: float


def ramanujan_perimeter(a: float, b: float) -> float:
    """Ramanujan's second approximation of an ellipse's perimeter (exact for a circle).

    Args:
        a, b: the semi-axes (any order, same unit).
    Returns:
        The perimeter, in that unit.
    """
    if a < 0 or b < 0:
        raise ValueError(f"semi-axes must be >= 0, got a={a}, b={b}")
    if a + b == 0:
        return 0.0
    h = ((a - b) / (a + b)) ** 2
    return math.pi * (a + b) * (1 + 3 * h / (10 + math.sqrt(4 - 3 * h)))


def _largest_component_filled(mask: np.ndarray) -> tuple[np.ndarray, int, int] | None:
    """The largest 8-connected component, holes filled, cropped with a 1 px background margin.

    Returns:
        (filled uint8 crop, x offset, y offset) of the crop in the mask, or None when the mask
        is empty or the component's outer contour has fewer than 5 points.
    """
    binary = np.ascontiguousarray(mask, dtype=np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if count < 2:
        return None
    label = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x0, y0, width, height = stats[label, :4]
    component = labels[y0 : y0 + height, x0 : x0 + width] == label
    crop = np.pad(component, 1).astype(np.uint8)
    contours, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    outer = max(contours, key=len)
    if len(outer) < 5:  # cv2.fitEllipse needs 5 points
        return None
    # Drawing the outer contour filled drops holes, so only the outer boundary is fitted.
    filled = cv2.drawContours(np.zeros_like(crop), [outer], -1, 1, thickness=cv2.FILLED)
    return filled, int(x0) - 1, int(y0) - 1


def boundary_edge_points(filled: np.ndarray) -> np.ndarray:
    """Midpoints of the pixel edges between foreground and its 4-neighbour background.

    These lie on the boundary of the union of the foreground pixel squares, which is where an
    exactly rasterised shape's edge is (pixel centres of boundary pixels sit ~0.5 px inside).

    Args:
        filled: HxW bool/0-1 array.
    Returns:
        (N, 2) float64 array of (x, y), pixel-centre coordinates of `filled`.
    """
    foreground = np.pad(np.asarray(filled, dtype=bool), 1)
    inner = foreground[1:-1, 1:-1]
    points = []
    height, width = inner.shape
    for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        neighbour = foreground[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]
        ys, xs = np.nonzero(inner & ~neighbour)
        points.append(np.stack([xs + dx / 2, ys + dy / 2], axis=1))
    return np.concatenate(points).astype(np.float64)


def to_original_xy(points_xy: np.ndarray, scale_xy: Sequence[float]) -> np.ndarray:
    """Map mask pixel-centre coordinates to original-image pixel-centre coordinates.

    A resize by s maps pixel EDGES e -> e * s (x_orig = x * sx in edge coordinates); a pixel's
    centre sits half a pixel from its edge, hence x_orig = (x + 0.5) * sx - 0.5 for centres.
    """
    scale = np.asarray(scale_xy, dtype=np.float64).reshape(1, 2)
    return (points_xy + 0.5) * scale - 0.5


def fit_ellipse_px(
    mask: np.ndarray, scale_xy: Sequence[float] = (1.0, 1.0)
) -> tuple[float, float, float, float, float] | None:
    """Largest connected component -> its outer pixel-edge boundary -> cv2.fitEllipse.

    Args:
        mask: HxW bool (or 0/nonzero) head mask, possibly a resized version of the image.
        scale_xy: (sx, sy) original pixels per mask pixel; (1, 1) fits in the mask's own frame.
    Returns:
        (centre x, centre y, semi-major a, semi-minor b, angle of a in [0, pi)) in pixels of
        the frame `scale_xy` maps to, or None when the mask is empty, the component has fewer
        than 5 contour points or the fit degenerates.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be HxW, got shape {mask.shape}")
    found = _largest_component_filled(mask != 0)
    if found is None:
        return None
    filled, x_offset, y_offset = found
    points = boundary_edge_points(filled) + (x_offset, y_offset)
    points = to_original_xy(points, scale_xy)
    (cx, cy), (width, height), angle_deg = cv2.fitEllipse(points.astype(np.float32))
    # cv2's `width` axis lies along `angle`; make a the semi-major axis along angle_rad.
    semi_a, semi_b, angle = width / 2, height / 2, math.radians(angle_deg)
    if semi_a < semi_b:
        semi_a, semi_b, angle = semi_b, semi_a, angle + math.pi / 2
    if not all(map(math.isfinite, (cx, cy, semi_a, semi_b))) or semi_b <= 0:
        return None
    return float(cx), float(cy), float(semi_a), float(semi_b), angle % math.pi


def measure_mask(
    mask: np.ndarray,
    pixel_size_mm: float,
    scale_xy: Sequence[float] = (1.0, 1.0),
    mask_outset_px: float = 0.0,
) -> EllipseMeasurement | None:
    """Largest connected component -> its outer pixel-edge boundary -> cv2.fitEllipse -> HC.

    Args:
        mask: HxW bool (or 0/nonzero) head mask, possibly a resized version of the image.
        pixel_size_mm: size of one ORIGINAL image pixel in mm.
        scale_xy: (sx, sy) original pixels per mask pixel, e.g. (800/512, 540/512); the boundary
            points are scaled before fitting, so a non-uniform resize is handled exactly.
        mask_outset_px: how far the mask's edge lies outside the ellipse it depicts, in original
            pixels; subtracted from both semi-axes. `HC18_MASK_OUTSET_PX` for HC18 masks and
            networks trained on them, 0 for exact masks.
    Returns:
        The ellipse in mm (conventions: module docstring), or None when the mask is empty, the
        component is too small to fit (< 5 contour points) or the fit degenerates.
    """
    fit = fit_ellipse_px(mask, scale_xy)
    if fit is None:
        return None
    cx, cy, semi_a, semi_b, angle = fit
    semi_a, semi_b = semi_a - mask_outset_px, semi_b - mask_outset_px
    if semi_b <= 0:
        return None
    return EllipseMeasurement(
        hc_mm=ramanujan_perimeter(semi_a, semi_b) * pixel_size_mm,
        center_x_mm=cx * pixel_size_mm,
        center_y_mm=cy * pixel_size_mm,
        semi_axes_a_mm=semi_a * pixel_size_mm,
        semi_axes_b_mm=semi_b * pixel_size_mm,
        angle_rad=angle,
    )
