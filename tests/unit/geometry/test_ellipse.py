"""Head circumference from masks: Ramanujan, ellipse fits on exact rasterisations, the HC18
conventions, non-uniform resizes, the real HC18 masks."""

from __future__ import annotations

import math
import time

import cv2
import numpy as np
import pytest
from scipy.special import ellipe
from scoring import HEIGHT, WIDTH, ellipse_mask

from trainables.core.config import HC18_MASK_OUTSET_PX
from trainables.geometry.ellipse import measure_mask, ramanujan_perimeter


def angle_error_rad(measured: float, expected_deg: float) -> float:
    """Distance between two axis directions (modulo pi)."""
    diff = (measured - math.radians(expected_deg)) % math.pi
    return min(diff, math.pi - diff)


def test_ramanujan_is_exact_for_circles_and_close_to_the_elliptic_integral():
    assert ramanujan_perimeter(10, 10) == pytest.approx(2 * math.pi * 10, rel=1e-12)
    assert ramanujan_perimeter(0, 0) == 0.0
    for a, b in [(2, 1), (5, 4), (10, 1)]:
        exact = 4 * a * ellipe(1 - (b / a) ** 2)
        assert ramanujan_perimeter(a, b) == pytest.approx(exact, rel=2e-5)
        assert ramanujan_perimeter(b, a) == ramanujan_perimeter(a, b)
    with pytest.raises(ValueError, match="semi-axes must be >= 0"):
        ramanujan_perimeter(-1, 2)


# (centre x, centre y, semi-axis along the angle, other semi-axis, angle in degrees)
ELLIPSES = [
    (400, 270, 300, 200, 0),
    (400.3, 269.6, 100, 60, 30),
    (250, 300, 40, 39, 77),
    (600.5, 100.5, 40, 16, 120),  # small: discretisation stays < 0.5 % from a ~30 px up
    (380, 260, 150, 50, 170),
    (420, 280, 60, 110, 45),  # the longer axis across the angle: a/b and angle swap
]


@pytest.mark.parametrize("cx, cy, a, b, angle_deg", ELLIPSES)
def test_exact_ellipses_measure_within_half_a_percent(cx, cy, a, b, angle_deg):
    pixel_size = 0.1
    measured = measure_mask(ellipse_mask(cx, cy, a, b, angle_deg), pixel_size)
    expected_hc = ramanujan_perimeter(a, b) * pixel_size
    assert measured.hc_mm == pytest.approx(expected_hc, rel=0.005)
    # Centre from the centre of the top-left pixel, in mm.
    assert measured.center_x_mm == pytest.approx(cx * pixel_size, abs=0.1 * pixel_size)
    assert measured.center_y_mm == pytest.approx(cy * pixel_size, abs=0.1 * pixel_size)
    # Convention: a is the semi-major axis, along angle_rad in [0, pi).
    major, minor = max(a, b), min(a, b)
    assert measured.semi_axes_a_mm == pytest.approx(major * pixel_size, abs=0.5 * pixel_size)
    assert measured.semi_axes_b_mm == pytest.approx(minor * pixel_size, abs=0.5 * pixel_size)
    assert 0 <= measured.angle_rad < math.pi
    if major / minor > 1.1:  # a near-circle has no meaningful angle
        major_angle = angle_deg if a >= b else angle_deg + 90
        assert angle_error_rad(measured.angle_rad, major_angle) < math.radians(1)


def test_angle_is_clockwise_from_x_in_image_coordinates():
    # Major axis from upper-left to lower-right as displayed (y grows downwards): +45 degrees.
    mask = ellipse_mask(400, 270, 150, 50, 45)
    assert mask[270 + 80, 400 + 80] and not mask[270 - 80, 400 + 80]
    assert measure_mask(mask, 1.0).angle_rad == pytest.approx(math.pi / 4, abs=0.01)
    vertical = measure_mask(ellipse_mask(400, 270, 50, 150, 0), 1.0)
    assert vertical.angle_rad == pytest.approx(math.pi / 2, abs=0.01)
    assert vertical.semi_axes_a_mm == pytest.approx(150, abs=0.5)


@pytest.mark.parametrize("a, b, angle_deg", [(200, 150, 0), (120, 70, 30), (90, 60, 120)])
@pytest.mark.parametrize("side", [256, 512])
def test_non_uniform_resize_is_undone_before_fitting(a, b, angle_deg, side):
    pixel_size = 0.15
    mask = ellipse_mask(390, 265, a, b, angle_deg).astype(np.uint8)
    small = cv2.resize(mask, (side, side), interpolation=cv2.INTER_NEAREST)
    scale_xy = (WIDTH / side, HEIGHT / side)
    measured = measure_mask(small, pixel_size, scale_xy)
    assert measured.hc_mm == pytest.approx(ramanujan_perimeter(a, b) * pixel_size, rel=0.005)
    assert angle_error_rad(measured.angle_rad, angle_deg) < math.radians(1.5)
    # cv2's INTER_NEAREST samples at floor(x * s), up to (s - 1) / 2 px off the pixel centre.
    tolerance = max(scale_xy) / 2 * pixel_size
    assert measured.center_x_mm == pytest.approx(390 * pixel_size, abs=tolerance)
    assert measured.center_y_mm == pytest.approx(265 * pixel_size, abs=tolerance)


def test_resized_centres_map_pixel_centre_to_pixel_centre():
    # A centre-aligned resize (INTER_NEAREST_EXACT) keeps the centre exactly where
    # x_orig = (x + 0.5) * sx - 0.5 puts it; x * sx alone would be 1.06 px off in x at 256.
    mask = ellipse_mask(400.0, 270.0, 180, 120, 20).astype(np.uint8)
    small = cv2.resize(mask, (256, 256), interpolation=cv2.INTER_NEAREST_EXACT)
    measured = measure_mask(small, 1.0, (WIDTH / 256, HEIGHT / 256))
    assert measured.center_x_mm == pytest.approx(400.0, abs=0.35)
    assert measured.center_y_mm == pytest.approx(270.0, abs=0.35)


def test_largest_component_outer_boundary_only():
    mask = ellipse_mask(400, 270, 120, 90, 10)
    mask[260:280, 390:410] = False  # a hole: not part of the outer boundary
    mask[10:40, 10:40] = True  # a smaller blob elsewhere: ignored
    measured = measure_mask(mask, 1.0)
    assert measured.hc_mm == pytest.approx(ramanujan_perimeter(120, 90), rel=0.005)
    assert measured.center_x_mm == pytest.approx(400, abs=0.1)


def test_empty_and_tiny_masks_give_none():
    empty = np.zeros((64, 64), bool)
    assert measure_mask(empty, 0.1) is None
    single = empty.copy()
    single[5, 5] = True  # one pixel: a 1-point contour
    assert measure_mask(single, 0.1) is None
    pair = empty.copy()
    pair[5, 5:7] = True  # two pixels: 2 contour points
    assert measure_mask(pair, 0.1) is None
    with pytest.raises(ValueError, match="mask must be HxW"):
        measure_mask(np.zeros((2, 64, 64), bool), 0.1)


def test_mask_outset_is_removed_from_both_semi_axes():
    # An HC18-style mask reaches HC18_MASK_OUTSET_PX beyond the annotated ellipse.
    outset = HC18_MASK_OUTSET_PX
    mask = ellipse_mask(400, 270, 150 + outset, 100 + outset, 25)
    measured = measure_mask(mask, 0.2, mask_outset_px=outset)
    assert measured.hc_mm == pytest.approx(ramanujan_perimeter(150, 100) * 0.2, rel=0.002)
    as_drawn = measure_mask(mask, 0.2)
    assert as_drawn.hc_mm - measured.hc_mm == pytest.approx(2 * math.pi * outset * 0.2, rel=0.02)


@pytest.mark.realdata
def test_real_hc18_masks_match_the_reference_hc(real_hc18_dir):
    from trainables.data.hc18_files import load_annotation, scan_dataset

    started = time.perf_counter()
    samples = scan_dataset(real_hc18_dir)
    as_drawn, corrected = [], []
    for sample in samples:
        mask = load_annotation(sample.annotation_path)
        as_drawn.append(measure_mask(mask, sample.pixel_size_mm).hc_mm - sample.reference_hc_mm)
        hc18 = measure_mask(mask, sample.pixel_size_mm, mask_outset_px=HC18_MASK_OUTSET_PX)
        corrected.append(hc18.hc_mm - sample.reference_hc_mm)
    as_drawn, corrected = np.array(as_drawn), np.array(corrected)
    print(
        f"\n{len(samples)} HC18 masks in {time.perf_counter() - started:.1f} s: "
        f"as drawn MAE {np.abs(as_drawn).mean():.3f} mm (signed {as_drawn.mean():+.3f}); "
        f"outset {HC18_MASK_OUTSET_PX} px MAE {np.abs(corrected).mean():.3f} mm "
        f"(signed {corrected.mean():+.3f})"
    )
    assert len(samples) == 799
    assert np.abs(as_drawn).mean() < 1.5  # measured 1.378 mm: the masks include the outline
    assert np.abs(corrected).mean() < 0.1  # measured 0.015 mm
    assert abs(corrected.mean()) < 0.05
