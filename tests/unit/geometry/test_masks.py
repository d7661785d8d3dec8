"""Head-mask geometry: official outlines cut by the image border are filled as their ellipse, and
shapes that are not ellipses are told apart."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from trainables.geometry.masks import ellipse_iou, fill_annotation


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.mark.parametrize("thickness", [1, 2, 3])
def test_outline_cut_by_the_image_border_is_filled_as_its_ellipse(thickness):
    # The official set has heads running off the image; their outline is open at the border.
    ellipse = ((700, 300), (400, 300), 20)  # centre, full axes, angle: the right side is cut off
    outline = np.zeros((540, 800), np.uint8)
    cv2.ellipse(outline, ellipse, 255, thickness)
    expected = np.zeros((540, 800), np.uint8)
    cv2.ellipse(expected, ellipse, 255, -1)
    assert iou(fill_annotation(outline > 0), expected > 0) > 0.97


def test_square_and_two_blobs_are_not_ellipses():
    square = np.zeros((540, 800), bool)
    square[100:300, 100:300] = True
    blobs = np.zeros((540, 800), np.uint8)
    cv2.circle(blobs, (200, 200), 60, 1, -1)
    cv2.circle(blobs, (500, 300), 60, 1, -1)
    assert ellipse_iou(square) < 0.9
    assert ellipse_iou(blobs > 0) < 0.9
