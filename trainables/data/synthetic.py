"""HC18-like synthetic ultrasound with a known head ellipse, in the official HC18 layout.

Each image: a fan-shaped field of view on black, Rayleigh speckle, a bright skull ring whose outer
edge is the annotated ellipse (as in HC18), acoustic shadows behind the skull, dark fluid and
textured tissue, and brightness falling with depth. The CSV's head circumference is the ellipse's
Ramanujan perimeter times the pixel size, so metrics can be checked against exact answers.
`<subset>_ellipses.csv` holds the true ellipses (pixels) for such checks.
`python -m trainables.synthetic` writes such a data set.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from trainables.data.hc18_files import (
    FILENAME_COL,
    HC_COL,
    PIXEL_SIZE_COL,
    SUBSET_CSV,
    annotation_name,
)
from trainables.geometry.ellipse import ramanujan_perimeter

# Realistic ranges: HC18 heads span ~25-60% of the image width; pixel sizes ~0.05-0.35 mm.
HEAD_WIDTH_FRACTION = (0.25, 0.60)
AXIS_RATIO = (0.72, 0.90)  # minor/major semi-axis (BPD/OFD of a fetal head ~0.75-0.85)
PIXEL_SIZE_MM = (0.05, 0.25)
# A quarter of exams have 2-3 images (HC18: ~16%), so even 8 images exercise grouped splits.
IMAGES_PER_EXAM_P = {1: 0.75, 2: 0.18, 3: 0.07}


@dataclass(frozen=True)
class Ellipse:
    center_x: float  # pixels
    center_y: float
    semi_major: float  # pixels, along angle_deg
    semi_minor: float
    angle_deg: float  # of the major axis, clockwise from +x (image coordinates, as cv2)


def _normalised_radius(ellipse: Ellipse, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """q = 1 on the ellipse, < 1 inside; also gives the rotated frame for later use."""
    theta = math.radians(ellipse.angle_deg)
    dx, dy = xs - ellipse.center_x, ys - ellipse.center_y
    u = (dx * math.cos(theta) + dy * math.sin(theta)) / ellipse.semi_major
    v = (-dx * math.sin(theta) + dy * math.cos(theta)) / ellipse.semi_minor
    return np.sqrt(u * u + v * v)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell: int) -> np.ndarray:
    """Zero-mean, unit-ish smooth random field with features ~cell pixels across."""
    height, width = shape
    coarse = rng.standard_normal((height // cell + 2, width // cell + 2)).astype(np.float32)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)


def _speckle(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Unit-mean Rayleigh speckle: magnitude of a correlated complex Gaussian field.

    Blurring the real and imaginary parts gives grains ~3 px wide and ~1.5 px tall (wider across
    the beam, as in real B-mode images) while the magnitude stays Rayleigh distributed.
    """
    parts = []
    for _ in range(2):
        field = rng.standard_normal(shape).astype(np.float32)
        parts.append(cv2.GaussianBlur(field, (0, 0), sigmaX=1.5, sigmaY=0.8))
    magnitude = np.sqrt(parts[0] ** 2 + parts[1] ** 2)
    return magnitude / magnitude.mean()


def _sample_ellipse(
    rng: np.random.Generator, width: int, height: int, semi_major: float, ratio: float
) -> Ellipse:
    """Random angle and a centre that keeps the whole ellipse (plus a margin) in the image."""
    semi_minor = semi_major * ratio
    margin = 8
    for _ in range(100):
        angle = float(rng.uniform(-90, 90))
        theta = math.radians(angle)
        half_w = math.hypot(semi_major * math.cos(theta), semi_minor * math.sin(theta))
        half_h = math.hypot(semi_major * math.sin(theta), semi_minor * math.cos(theta))
        if 2 * (half_w + margin) < width and 2 * (half_h + margin) < height:
            # Sonographers centre the head: shrink the allowed offsets towards the middle.
            cx = width / 2 + 0.7 * rng.uniform(-1, 1) * (width / 2 - half_w - margin)
            cy = height / 2 + 0.7 * rng.uniform(-1, 1) * (height / 2 - half_h - margin)
            return Ellipse(float(cx), float(cy), semi_major, semi_minor, angle)
    # Too tall for any angle: lie flat (the image is wider than tall).
    return Ellipse(width / 2, height / 2, semi_major, semi_minor, 0.0)


def render_image(
    rng: np.random.Generator, ellipse: Ellipse, width: int, height: int
) -> tuple[np.ndarray, np.ndarray]:
    """One HC18-like image and its filled head mask (bool), both height x width."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    # Fan geometry: the probe apex sits well above the image and the fan is just narrower than
    # the image at the top (so the top corners are black) and ends above the bottom corners.
    apex_x = width / 2 + rng.uniform(-0.03, 0.03) * width
    apex_y = -rng.uniform(0.5, 0.9) * height
    corner_angle = math.atan2(width / 2, -apex_y)  # apex -> top corner, from straight down
    half_angle = corner_angle - math.radians(rng.uniform(4, 10))
    depth = height - apex_y
    ray_x, ray_y = xs - apex_x, ys - apex_y
    radius = np.sqrt(ray_x**2 + ray_y**2)
    beam_angle = np.arctan2(ray_x, ray_y)
    fan = (np.abs(beam_angle) < half_angle) & (radius < rng.uniform(0.95, 1.0) * depth)
    fan &= radius > -apex_y + rng.uniform(0.0, 0.04) * height

    q = _normalised_radius(ellipse, xs, ys)
    head = q <= 1.0
    mean_axis = (ellipse.semi_major + ellipse.semi_minor) / 2
    skull_px = rng.uniform(5, 11)
    skull = head & (q >= 1 - skull_px / mean_axis)

    # Echogenicity (0..1) before speckle: tissue, an amniotic-fluid pocket around the head,
    # textured brain with dark fluid spaces, then the skull.
    echo = 0.42 + 0.08 * _smooth_noise(rng, (height, width), 40)
    echo += 0.06 * _smooth_noise(rng, (height, width), 12)
    pocket = _normalised_radius(
        Ellipse(
            ellipse.center_x + rng.uniform(-0.15, 0.15) * mean_axis,
            ellipse.center_y + rng.uniform(-0.1, 0.2) * mean_axis,
            ellipse.semi_major * rng.uniform(1.15, 1.45),
            ellipse.semi_minor * rng.uniform(1.1, 1.5),
            ellipse.angle_deg + rng.uniform(-20, 20),
        ),
        xs,
        ys,
    )
    fluid_level = rng.uniform(0.03, 0.1)
    if rng.random() < 0.7:  # irregular amniotic-fluid pocket around most heads
        pocket += 0.12 * _smooth_noise(rng, (height, width), 60)
        echo = np.where(pocket < 1, fluid_level, echo)
    brain = 0.24 + 0.07 * _smooth_noise(rng, (height, width), 18)
    for _ in range(int(rng.integers(1, 4))):  # ventricles / cavum: small dark fluid spaces
        spot = Ellipse(
            ellipse.center_x + rng.uniform(-0.45, 0.45) * ellipse.semi_major,
            ellipse.center_y + rng.uniform(-0.45, 0.45) * ellipse.semi_minor,
            rng.uniform(0.08, 0.2) * mean_axis,
            rng.uniform(0.04, 0.1) * mean_axis,
            ellipse.angle_deg + rng.uniform(-30, 30),
        )
        brain = np.where(_normalised_radius(spot, xs, ys) < 1, fluid_level * 1.5, brain)
    echo = np.where(head, brain, echo)

    # Skull brightness depends on incidence: strongest where the ring faces the probe.
    grad_y, grad_x = np.gradient(q)
    normal_norm = np.sqrt(grad_x**2 + grad_y**2) + 1e-6
    incidence = np.abs(grad_x * ray_x + grad_y * ray_y) / (normal_norm * (radius + 1e-6))
    echo = np.where(skull, 0.55 + 0.45 * incidence, echo)

    # Acoustic shadow: beyond where a ray meets the skull, what is behind it is attenuated.
    theta = math.radians(ellipse.angle_deg)
    cos_t, sin_t = math.cos(theta), math.sin(theta)

    def to_unit(px, py):  # into the frame where the head ellipse is the unit circle
        return (
            (px * cos_t + py * sin_t) / ellipse.semi_major,
            (-px * sin_t + py * cos_t) / ellipse.semi_minor,
        )

    u0, v0 = to_unit(apex_x - ellipse.center_x, apex_y - ellipse.center_y)
    du, dv = to_unit(ray_x / (radius + 1e-6), ray_y / (radius + 1e-6))
    qa, qb, qc = du * du + dv * dv, 2 * (u0 * du + v0 * dv), u0 * u0 + v0 * v0 - 1
    disc = qb * qb - 4 * qa * qc
    hits = disc > 0
    root = np.sqrt(np.where(hits, disc, 0))
    near, far = (-qb - root) / (2 * qa), (-qb + root) / (2 * qa)
    attenuation = np.ones_like(echo)
    attenuation[hits & (radius > near + skull_px)] *= rng.uniform(0.55, 0.8)
    attenuation[hits & (radius > far)] *= rng.uniform(0.45, 0.7)
    echo = echo * cv2.GaussianBlur(attenuation, (0, 0), 2.0)

    echo = cv2.GaussianBlur(echo, (0, 0), 1.2)  # soft edges, as the beam has a finite width
    echo *= np.exp(-rng.uniform(0.4, 0.9) * radius / depth)  # depth falloff
    intensity = echo * _speckle(rng, (height, width))
    # Display mapping: gamma compression, as a scanner's log compression tames the speckle.
    image = 255 * np.clip(intensity / 1.3, 0, 1) ** 0.6
    image[~fan] = 0
    return image.astype(np.uint8), head


def _outline(mask: np.ndarray, thickness: int) -> np.ndarray:
    """The inner `thickness`-pixel rim of a filled mask (the official HC18 annotation style)."""
    eroded = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=thickness)
    return mask & ~eroded.astype(bool)


def _exam_names(rng: np.random.Generator, n_images: int) -> list[tuple[str, int, int]]:
    """[(filename, exam, image in exam)] with some multi-image exams: 000_HC, 001_HC, 001_2HC..."""
    sizes, probs = list(IMAGES_PER_EXAM_P), list(IMAGES_PER_EXAM_P.values())
    names: list[tuple[str, int, int]] = []
    exam = 0
    while len(names) < n_images:
        for k in range(int(rng.choice(sizes, p=probs))):
            names.append((f"{exam:03d}_{'' if k == 0 else k + 1}HC.png", exam, k))
        exam += 1
    return names[:n_images]


def _exam_image_params(seed: int, exam: int, k: int, width: int) -> tuple[float, float, float]:
    """(semi_major_px, axis_ratio, pixel_size_mm): one head per exam, seen at varied zooms."""
    exam_rng = np.random.default_rng([seed, exam, 0])
    lo_px, hi_px = (f * width / 2 for f in HEAD_WIDTH_FRACTION)
    first_px = exam_rng.uniform(lo_px, hi_px)
    ratio = exam_rng.uniform(*AXIS_RATIO)
    pixel_size = exam_rng.uniform(*PIXEL_SIZE_MM)
    if k == 0:
        return first_px, ratio, pixel_size
    head_mm = first_px * pixel_size
    lo = max(lo_px, head_mm / PIXEL_SIZE_MM[1])
    hi = min(hi_px, head_mm / PIXEL_SIZE_MM[0])
    semi_major = np.random.default_rng([seed, exam, k]).uniform(lo, hi)
    return semi_major, ratio, head_mm / semi_major


def generate_dataset(
    out_dir: str | Path,
    n_images: int,
    *,
    seed: int = 0,
    size: tuple[int, int] = (800, 540),
    outline: bool = False,
    with_test_set: int = 0,
) -> Path:
    """Write an HC18-layout data set of synthetic images with exactly known heads.

    Args:
        out_dir: created if needed; existing files of the same names are overwritten.
        n_images: annotated images in training_set/.
        seed: the same seed gives the same files; image i does not depend on n_images.
        size: (width, height) in pixels.
        outline: annotations as 1-2 px ellipse outlines (official HC18) instead of filled masks.
        with_test_set: also write this many unannotated images in test_set/.

    Returns:
        out_dir as a Path.
    """
    out_dir = Path(out_dir)
    width, height = size
    subsets = [("training_set", n_images, seed)]
    if with_test_set:
        subsets.append(("test_set", with_test_set, seed + 1_000_003))  # disjoint from training
    for subset, count, subset_seed in subsets:
        image_dir = out_dir / subset
        image_dir.mkdir(parents=True, exist_ok=True)
        rows, ellipse_rows = [], []
        names = _exam_names(np.random.default_rng([subset_seed, 1]), count)
        for filename, exam, k in names:
            semi_major, ratio, pixel_size = _exam_image_params(subset_seed, exam, k, width)
            rng = np.random.default_rng([subset_seed, exam, k, 2])
            ellipse = _sample_ellipse(rng, width, height, semi_major, ratio)
            image, mask = render_image(rng, ellipse, width, height)
            cv2.imwrite(str(image_dir / filename), image)
            hc_mm = ramanujan_perimeter(ellipse.semi_major, ellipse.semi_minor) * pixel_size
            if subset == "training_set":
                thickness = 1 + exam % 2  # 1 or 2 px, fixed per exam so names stay reproducible
                annotation = _outline(mask, thickness) if outline else mask
                annotation_path = image_dir / annotation_name(filename)
                cv2.imwrite(str(annotation_path), annotation.astype(np.uint8) * 255)
                rows.append([filename, repr(pixel_size), repr(hc_mm)])
            else:
                rows.append([filename, repr(pixel_size)])
            ellipse_rows.append(
                [filename, ellipse.center_x, ellipse.center_y, ellipse.semi_major]
                + [ellipse.semi_minor, ellipse.angle_deg, pixel_size, hc_mm]
            )
        header = [FILENAME_COL, PIXEL_SIZE_COL]
        if subset == "training_set":
            header.append(HC_COL)
        _write_csv(out_dir / SUBSET_CSV[subset], header, rows)
        _write_csv(
            out_dir / f"{subset}_ellipses.csv",
            ["filename", "center_x_px", "center_y_px", "semi_major_px", "semi_minor_px"]
            + ["angle_deg", "pixel_size_mm", "hc_mm"],
            [[r[0]] + [repr(float(v)) for v in r[1:]] for r in ellipse_rows],
        )
    return out_dir


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
