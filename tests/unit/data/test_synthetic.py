"""The synthetic generator: exact head circumferences, ellipse masks, ultrasound-like images."""

from __future__ import annotations

import csv
import math

import cv2
import numpy as np
import pytest

from trainables.data.hc18_files import load_annotation, scan_dataset
from trainables.data.splits import exam_id
from trainables.data.synthetic import Ellipse, _normalised_radius, generate_dataset


def read_rows(path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def true_ellipses(root) -> dict[str, dict[str, float]]:
    rows = read_rows(root / "training_set_ellipses.csv")
    return {r["filename"]: {k: float(v) for k, v in r.items() if k != "filename"} for r in rows}


def ramanujan(a: float, b: float) -> float:
    h = ((a - b) / (a + b)) ** 2
    return math.pi * (a + b) * (1 + 3 * h / (10 + math.sqrt(4 - 3 * h)))


def test_ramanujan_is_an_ellipse_perimeter():
    # Against a 200,000-gon: Ramanujan's second formula is exact to ~1e-9 for HC18's shapes.
    t = np.linspace(0, 2 * np.pi, 200_001)
    a, b = 200.0, 150.0
    polygon = np.hypot(np.diff(a * np.cos(t)), np.diff(b * np.sin(t))).sum()
    assert ramanujan(a, b) == pytest.approx(polygon, rel=1e-8)


def test_csv_head_circumference_is_the_ellipse_perimeter_in_mm(synthetic_dir):
    ellipses = true_ellipses(synthetic_dir)
    rows = read_rows(synthetic_dir / "training_set_pixel_size_and_HC.csv")
    assert len(rows) == 24
    for row in rows:
        e = ellipses[row["filename"]]
        pixel_size = float(row["pixel size(mm)"])
        expected = ramanujan(e["semi_major_px"], e["semi_minor_px"]) * pixel_size
        assert float(row["head circumference (mm)"]) == pytest.approx(expected, rel=1e-12)
        assert 0.05 <= pixel_size <= 0.25
        assert 0.25 * 800 <= 2 * e["semi_major_px"] <= 0.60 * 800


def test_filled_annotation_is_the_ellipse(synthetic_dir):
    ellipses = true_ellipses(synthetic_dir)
    for sample in scan_dataset(synthetic_dir):
        e = ellipses[sample.filename]
        area = load_annotation(sample.annotation_path).sum()
        assert area == pytest.approx(math.pi * e["semi_major_px"] * e["semi_minor_px"], rel=0.02)


def test_skull_ring_lies_just_inside_the_annotated_edge(synthetic_dir):
    # HC18 annotates the outer edge of the skull: the bright ring is inside the ellipse's rim.
    ellipses = true_ellipses(synthetic_dir)
    for name, e in ellipses.items():
        image = cv2.imread(str(synthetic_dir / "training_set" / name), cv2.IMREAD_GRAYSCALE)
        ys, xs = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
        ellipse = Ellipse(
            e["center_x_px"],
            e["center_y_px"],
            e["semi_major_px"],
            e["semi_minor_px"],
            e["angle_deg"],
        )
        q = _normalised_radius(ellipse, xs, ys)
        in_fan = image > 0

        def band_mean(lo, hi, q=q, image=image, in_fan=in_fan):
            return image[(q > lo) & (q <= hi) & in_fan].mean()

        ring = band_mean(0.97, 1.0)
        assert ring > 1.2 * band_mean(0.8, 0.9), name
        assert ring > 1.2 * band_mean(1.05, 1.15), name


def test_images_have_speckle_and_a_black_fan_border(synthetic_dir):
    for sample in scan_dataset(synthetic_dir)[:8]:
        image = cv2.imread(str(sample.image_path), cv2.IMREAD_GRAYSCALE)
        assert image.shape == (540, 800)
        for corner in (image[:10, :10], image[:10, -10:], image[-10:, :10], image[-10:, -10:]):
            assert corner.max() == 0, f"{sample.filename}: corners must be outside the fan"
        in_fan = image > 0
        assert 0.6 < in_fan.mean() < 0.98
        # Fully developed speckle has std/mean ~0.52 before display compression; tissue here
        # must be clearly textured, not flat and not salt-and-pepper.
        patch = image[200:300, 350:450].astype(float)
        assert 0.15 < patch.std() / patch.mean() < 0.8, sample.filename
        assert len(np.unique(image[in_fan])) > 100


def test_some_exams_hold_several_images(synthetic_dir):
    names = [s.filename for s in scan_dataset(synthetic_dir)]
    exams = [exam_id(n) for n in names]
    assert any(exams.count(e) > 1 for e in set(exams))
    assert any("_2HC" in n for n in names)


def test_same_seed_same_files_and_outline_matches_filled(tmp_path):
    first = generate_dataset(tmp_path / "a", 3, seed=5, size=(320, 240))
    again = generate_dataset(tmp_path / "b", 3, seed=5, size=(320, 240))
    other = generate_dataset(tmp_path / "c", 3, seed=6, size=(320, 240))
    outline = generate_dataset(tmp_path / "d", 3, seed=5, size=(320, 240), outline=True)
    names = sorted(p.name for p in (first / "training_set").iterdir())
    assert len(names) == 6
    for name in names:
        data = (first / "training_set" / name).read_bytes()
        assert data == (again / "training_set" / name).read_bytes()
        if not name.endswith("_Annotation.png"):
            assert data == (outline / "training_set" / name).read_bytes()
        else:
            thin = cv2.imread(str(outline / "training_set" / name), cv2.IMREAD_GRAYSCALE) > 0
            filled = load_annotation(first / "training_set" / name)
            assert thin.sum() < 0.2 * filled.sum()
            np.testing.assert_array_equal(load_annotation(outline / "training_set" / name), filled)
    first_image = (first / "training_set" / "000_HC.png").read_bytes()
    assert first_image != (other / "training_set" / "000_HC.png").read_bytes()
