"""The two augmentation backends sample the same distribution (the paper's).

Each draw augments one synthetic 64 px image carrying two markers: a smooth blob right of the
centre in the image, a disc below the centre in the mask. Both move with the same transform
T = F R(theta) (rotation, then flips), so from their centroids (a = T (r, 0), b = T (0, r)):
sign(a_x) is the horizontal flip, sign(b_y) the vertical flip, and theta = atan2(sy a_y, sx a_x),
unambiguous because |theta| <= 25 deg < 90 deg. Fixed seeds make every test deterministic.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from trainables.data.augment import albumentations_transform, augment_albumentations, augment_torch

SIDE, RADIUS, DRAWS = 64, 16, 1000
ROTATE_DEG, HFLIP_P, VFLIP_P = 25.0, 0.5, 0.1
P_MIN = 0.01  # a deterministic test with 1% size per check


def marker_pair() -> tuple[np.ndarray, np.ndarray]:
    """uint8 image (blob at +RADIUS in x) and {0,1} mask (disc at +RADIUS in y)."""
    centre = (SIDE - 1) / 2
    y, x = np.mgrid[:SIDE, :SIDE].astype(np.float64)
    blob = np.exp(-((x - centre - RADIUS) ** 2 + (y - centre) ** 2) / (2 * 2.0**2))
    image = np.round(255 * blob).astype(np.uint8)
    mask = ((x - centre) ** 2 + (y - centre - RADIUS) ** 2 <= 4.0**2).astype(np.uint8)
    return image, mask


CUDA = torch.cuda.is_available()
GPU = [pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="no CUDA device")]
# torch_cuda: the same code on the GPU, where training uses it (its own random generator).
BACKENDS = ["albumentations", "torch", pytest.param("torch_cuda", marks=GPU)]


def augment_many(backend: str, images: np.ndarray, masks: np.ndarray, seed: int = 0):
    """Float [N,S,S] images in [0,1] and masks, augmented by one backend."""
    if backend == "albumentations":
        transform = albumentations_transform(ROTATE_DEG, HFLIP_P, VFLIP_P, seed=seed)
        out_images, out_masks = augment_albumentations(transform, images, masks)
        return out_images.astype(np.float64) / 255, out_masks.astype(np.float64)
    device = "cuda" if backend == "torch_cuda" else "cpu"
    generator = torch.Generator(device).manual_seed(seed)
    out_images, out_masks = augment_torch(
        torch.from_numpy(images).to(device).unsqueeze(1).float() / 255,
        torch.from_numpy(masks).to(device).unsqueeze(1).float(),
        ROTATE_DEG,
        HFLIP_P,
        VFLIP_P,
        generator=generator,
    )
    return out_images[:, 0].double().cpu().numpy(), out_masks[:, 0].double().cpu().numpy()


def centroids(weights: np.ndarray) -> np.ndarray:
    """[N, 2] (x, y) weighted centroids relative to the image centre."""
    centre = (SIDE - 1) / 2
    y, x = np.mgrid[:SIDE, :SIDE]
    total = weights.sum(axis=(1, 2))
    return (
        np.stack(
            [(weights * x).sum(axis=(1, 2)) / total, (weights * y).sum(axis=(1, 2)) / total], axis=1
        )
        - centre
    )


def estimate_draws(backend: str) -> dict[str, np.ndarray]:
    image, mask = marker_pair()
    images, masks = augment_many(
        backend, np.repeat(image[None], DRAWS, 0), np.repeat(mask[None], DRAWS, 0)
    )
    a, b = centroids(images), centroids(masks)
    sx, sy = np.sign(a[:, 0]), np.sign(b[:, 1])
    angle = np.degrees(np.arctan2(sy * a[:, 1], sx * a[:, 0]))
    return {"angle": angle, "hflip": sx < 0, "vflip": sy < 0, "masks": masks, "images": images}


@pytest.fixture(scope="module")
def draws() -> dict[str, dict[str, np.ndarray]]:
    backends = ["albumentations", "torch"] + (["torch_cuda"] if CUDA else [])
    return {backend: estimate_draws(backend) for backend in backends}


@pytest.mark.parametrize("backend", BACKENDS)
def test_angle_is_uniform_within_the_limit(draws, backend):
    angle = draws[backend]["angle"]
    # Centroid estimates are good to a fraction of a degree at a 16 px radius.
    assert np.abs(angle).max() <= ROTATE_DEG + 1.0
    assert np.abs(angle).max() > ROTATE_DEG - 1.0  # the whole range is used
    uniform = stats.uniform(loc=-ROTATE_DEG, scale=2 * ROTATE_DEG)
    assert stats.kstest(angle, uniform.cdf).pvalue > P_MIN


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("flip", "p"), [("hflip", HFLIP_P), ("vflip", VFLIP_P)])
def test_flip_rate_matches_its_probability(draws, backend, flip, p):
    flips = draws[backend][flip]
    assert stats.binomtest(int(flips.sum()), len(flips), p).pvalue > P_MIN
    # Independent of the other flip and of the angle. (Albumentations' Compose(seed=...) once
    # broke both: each transform drew the same numbers, so vflip implied hflip.)
    other = draws[backend]["vflip" if flip == "hflip" else "hflip"]
    assert stats.fisher_exact(np.histogram2d(flips, other, bins=2)[0]).pvalue > P_MIN
    angle = draws[backend]["angle"]
    assert stats.ks_2samp(angle[flips], angle[~flips]).pvalue > P_MIN


@pytest.mark.parametrize("backend", BACKENDS[1:])
def test_the_two_backends_draw_the_same_angles(draws, backend):
    result = stats.ks_2samp(draws["albumentations"]["angle"], draws[backend]["angle"])
    assert result.pvalue > P_MIN


@pytest.mark.parametrize("backend", BACKENDS)
def test_mask_is_nearest_and_image_is_bilinear(backend):
    square = np.zeros((SIDE, SIDE), np.uint8)
    square[20:44, 16:40] = 1
    images, masks = augment_many(
        backend, np.repeat(255 * square[None], 50, 0), np.repeat(square[None], 50, 0), seed=1
    )
    assert set(np.unique(masks)) == {0.0, 1.0}  # nearest: no blended labels
    # Bilinear: a rotated edge blends; nearly every draw (|angle| > ~0.5 deg) shows grey levels.
    grey = ((images > 0.05) & (images < 0.95)).any(axis=(1, 2))
    assert grey.mean() > 0.9
    # The same geometry: the mask covers the bright part of the image.
    assert np.abs(masks.sum(axis=(1, 2)) - images.sum(axis=(1, 2))).max() < 0.1 * square.sum()


@pytest.mark.parametrize("backend", BACKENDS)
def test_outside_the_field_of_view_is_zero(backend):
    ones = np.ones((200, SIDE, SIDE), np.uint8)
    images, masks = augment_many(backend, 255 * ones, ones, seed=2)
    # The corner pixel leaves the field of view once |angle| > ~2 deg (about 92% of draws; flips
    # map corners to corners); the centre never does.
    corner_empty = (images[:, 0, 0] == 0) & (masks[:, 0, 0] == 0)
    assert corner_empty.mean() > 0.8
    np.testing.assert_allclose(images[:, SIDE // 2, SIDE // 2], 1.0, atol=1e-5)
    assert np.all(masks[:, SIDE // 2, SIDE // 2] == 1.0)
