"""Hausdorff distances and their 95th percentile in mm, with non-uniform resizes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scoring import hausdorff_mm

from trainables.geometry.distances import boundary_distances_mm


def square(size: int, x0: int, y0: int, side: int = 10) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[y0 : y0 + side, x0 : x0 + side] = True
    return mask


def test_hausdorff_of_shifted_squares_in_mm():
    truth = square(40, 10, 10)
    # Shifted 3 px right: every boundary point is within 3 px of the other boundary.
    assert hausdorff_mm(square(40, 13, 10), truth, 0.5, (1.0, 1.0)) == pytest.approx(1.5)
    # Non-uniform resize: an x pixel is 2 original pixels wide, a y pixel 3 tall.
    assert hausdorff_mm(square(40, 13, 10), truth, 0.5, (2.0, 3.0)) == pytest.approx(3 * 2 * 0.5)
    assert hausdorff_mm(square(40, 10, 12), truth, 0.5, (2.0, 3.0)) == pytest.approx(2 * 3 * 0.5)
    # A square inside a larger one: the larger one's corner is farthest.
    inner = square(40, 12, 12, side=6)
    assert hausdorff_mm(inner, truth, 1.0, (1.0, 1.0)) == pytest.approx(math.hypot(2, 2))
    assert hausdorff_mm(truth, truth, 1.0, (1.0, 1.0)) == 0


def test_hd95_ignores_the_few_far_pixels_that_set_the_hausdorff_distance():
    truth = square(40, 10, 10)  # 36 boundary pixels
    pred = truth.copy()
    pred[35, 35] = True  # one stray pixel: 36 + 1 pred boundary points, 1 of 73 distances > 0
    distances = boundary_distances_mm(pred, truth, 0.5, (1.0, 1.0))
    assert distances["hd_mm"] == pytest.approx(math.hypot(16, 16) * 0.5)  # to corner (19, 19)
    assert distances["hd95_mm"] == 0
    empty = np.zeros_like(truth)
    diagonal = math.hypot(40, 40) * 0.5
    assert boundary_distances_mm(empty, truth, 0.5, (1.0, 1.0)) == {
        "hd_mm": pytest.approx(diagonal),
        "hd95_mm": pytest.approx(diagonal),
    }
