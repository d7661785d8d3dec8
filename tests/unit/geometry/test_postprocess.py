"""From scores to the head mask: the ellipse and largest-component post-processing on masks with
known answers, and flip test-time augmentation on networks whose output is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import ellipe
from scoring import per_image_scores, postprocess_mask

from trainables.geometry.ellipse import measure_mask
from trainables.geometry.postprocess import (
    POSTPROCESS,
    ellipse_mask,
    head_masks,
    largest_component,
    postprocess_batch,
)

# The true head: an ellipse in a 400 x 300 mask, semi-axes 110 and 70 px, tilted 25 degrees,
# centred off the pixel grid.
TRUE = {"cx": 190.3, "cy": 150.6, "a": 110.0, "b": 70.0, "angle": math.radians(25)}


def true_ellipse() -> np.ndarray:
    return ellipse_mask((300, 400), *TRUE.values())


def exact_hc_px(a: float, b: float) -> float:
    """The ellipse's perimeter from the complete elliptic integral (exact, not Ramanujan)."""
    return 4 * a * ellipe(1 - (b / a) ** 2)


def damaged(mask: np.ndarray) -> np.ndarray:
    """What a network gets wrong: spurious blobs, a hole inside the head, a bite out of its edge."""
    out = mask.copy()
    ys, xs = np.mgrid[0:300, 0:400]
    out |= (xs - 370) ** 2 + (ys - 40) ** 2 <= 15**2  # a blob in a corner
    out |= (xs - 30) ** 2 + (ys - 270) ** 2 <= 8**2  # another
    out[5:8, 5:60] = True  # a streak along the top
    out &= ~((xs - 200) ** 2 + (ys - 150) ** 2 <= 25**2)  # a hole in the middle
    out &= ~((xs - 290) ** 2 + (ys - 195) ** 2 <= 12**2)  # a bite out of the edge
    return out


def test_ellipse_postprocessing_recovers_the_true_ellipse_from_blobs_and_a_hole():
    truth, noisy = true_ellipse(), damaged(true_ellipse())
    raw_dice = per_image_scores(noisy[None], truth[None])["dice"].item()
    fixed = postprocess_mask(noisy, "ellipse")
    dice = per_image_scores(fixed[None], truth[None])["dice"].item()
    assert dice > 0.99 > raw_dice
    # HC within 1% of the exact perimeter (pixel size 0.1 mm, masks drawn exactly: no outset).
    measured = measure_mask(fixed, 0.1, (1.0, 1.0), mask_outset_px=0.0)
    assert measured.hc_mm == pytest.approx(exact_hc_px(110, 70) * 0.1, rel=0.01)
    assert measured.center_x_mm == pytest.approx(19.03, abs=0.1)  # within a pixel
    assert measured.angle_rad == pytest.approx(TRUE["angle"], abs=0.02)


def test_largest_component_drops_blobs_and_fills_holes_but_keeps_the_bite():
    truth, noisy = true_ellipse(), damaged(true_ellipse())
    kept = largest_component(noisy)
    assert not kept[30:50, 360:380].any() and not kept[5:8, 5:60].any()  # blobs gone
    assert kept[150, 200]  # the hole is filled
    assert not kept[195, 290]  # the bite stays: only the ellipse fit restores the outline
    assert (kept & ~truth).sum() == 0


def test_postprocessing_edge_cases():
    empty = np.zeros((20, 20), bool)
    for mode in POSTPROCESS:
        assert not postprocess_mask(empty, mode).any()
    tiny = empty.copy()
    tiny[3:5, 3:5] = True  # too small for an ellipse fit: the component itself is kept
    assert (postprocess_mask(tiny, "ellipse") == tiny).all()
    border = empty.copy()
    border[0:10, 0:6] = True  # touching the image border: kept whole
    assert (largest_component(border) == border).all()
    batch = np.stack([empty, tiny])
    assert postprocess_batch(batch, "none") is batch
    with pytest.raises(ValueError, match=r"unknown postprocess 'blob'; valid: \['none', 'largest'"):
        postprocess_mask(tiny, "blob")


def left_sure_right_unsure(images: torch.Tensor) -> torch.Tensor:
    """A network that sees a head in the left half (logit +1) and none in the right (-3)."""
    logits = torch.full_like(images, -3.0)
    logits[..., : images.shape[-1] // 2] = 1.0
    return logits


def test_flip_tta_averages_the_flipped_prediction():
    images = torch.zeros(2, 1, 8, 8)
    plain = head_masks(left_sure_right_unsure, images, tta=False)
    assert plain[..., :4].all() and not plain[..., 4:].any()
    # With the flip each pixel averages p(+1) = 0.73 and p(-3) = 0.05: 0.39 < 0.5 everywhere.
    assert not head_masks(left_sure_right_unsure, images, tta=True).any()
    calls = []

    def symmetric(batch):  # a flip-equivariant network: TTA changes nothing
        calls.append(batch.clone())
        return batch * 4 - 2

    images = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    symmetric_images = (images + torch.flip(images, dims=[-1])) / 2
    assert torch.equal(
        head_masks(symmetric, symmetric_images, tta=True),
        head_masks(symmetric, symmetric_images, tta=False),
    )
    assert torch.equal(calls[1], torch.flip(calls[0], dims=[-1]))  # the second run saw the flip


def test_ellipse_rasterisation_clipped_to_the_image_is_exact():
    # Only the bounding box is tested; that must equal testing every pixel of the image, also
    # for ellipses that leave the image or lie outside it.
    ys, xs = np.mgrid[0:60, 0:80].astype(np.float64)
    for cx, cy, a, b, angle in [(40, 30, 20, 8, 0.3), (-5, 10, 25, 12, 2.0), (200, 30, 9, 4, 1.0)]:
        u = (xs - cx) * math.cos(angle) + (ys - cy) * math.sin(angle)
        v = -(xs - cx) * math.sin(angle) + (ys - cy) * math.cos(angle)
        expected = (u / a) ** 2 + (v / b) ** 2 <= 1
        assert (ellipse_mask((60, 80), cx, cy, a, b, angle) == expected).all()
