"""Segmentation metrics against hand-computed masks, the seed paper's pooled variants, HC through
the accumulator, raw and post-processed scores of one evaluation, and the HC failure rate."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scoring import batch_pooled_scores, per_image_scores

from trainables.core.config import HC18_MASK_OUTSET_PX
from trainables.evaluation.hc_errors import hc_error_summary, hc_failed
from trainables.evaluation.metrics import MetricAccumulator
from trainables.geometry.ellipse import ramanujan_perimeter


def masks_from_rows(*rows: str) -> np.ndarray:
    """'#' = head, '.' = background."""
    return np.array([[char == "#" for char in row] for row in rows])


# 4x4: the prediction has 4 pixels, the truth 5, and 3 of them overlap.
PRED_4X4 = masks_from_rows("##..", "##..", "....", "....")
TRUTH_4X4 = masks_from_rows("#...", "##..", "#...", "#...")


def test_hand_computed_4x4_scores():
    scores = per_image_scores(PRED_4X4[None], TRUTH_4X4[None])
    # 3 wrong pixels (1 false positive, 2 false negatives) of 16.
    assert scores["pixel_accuracy"].item() == pytest.approx(13 / 16)
    assert scores["dice"].item() == pytest.approx(2 * 3 / (4 + 5))
    assert scores["iou"].item() == pytest.approx(3 / 6)
    assert scores["dice"].dtype == torch.float64 and scores["dice"].shape == (1,)


def test_empty_masks():
    empty = np.zeros((1, 4, 4), bool)
    both = per_image_scores(empty, empty)
    assert (both["dice"].item(), both["iou"].item(), both["pixel_accuracy"].item()) == (1, 1, 1)
    one = per_image_scores(empty, TRUTH_4X4[None])
    assert (one["dice"].item(), one["iou"].item()) == (0, 0)
    assert one["pixel_accuracy"].item() == pytest.approx(11 / 16)
    # The seed code's pooled formula has no such convention: an all-empty batch scores 0.
    assert batch_pooled_scores(empty, empty)["dice"] == 0


def test_torch_and_numpy_inputs_agree():
    from_numpy = per_image_scores(PRED_4X4[None], TRUTH_4X4[None])
    from_torch = per_image_scores(
        torch.from_numpy(PRED_4X4[None]), torch.from_numpy(TRUTH_4X4[None])
    )
    for name in ("pixel_accuracy", "dice", "iou"):
        assert from_numpy[name].item() == from_torch[name].item()


def test_bad_inputs_say_what_is_wrong():
    with pytest.raises(ValueError, match=r"pred \(1, 4, 4\) and target \(1, 4, 5\) differ"):
        per_image_scores(PRED_4X4[None], np.zeros((1, 4, 5), bool))
    with pytest.raises(TypeError, match="pred must be a bool mask, got float32; threshold first"):
        per_image_scores(PRED_4X4[None].astype(np.float32), TRUTH_4X4[None])
    with pytest.raises(TypeError, match="target must be a bool mask, got torch.uint8"):
        per_image_scores(PRED_4X4[None], torch.from_numpy(TRUTH_4X4[None]).to(torch.uint8))
    with pytest.raises(ValueError, match=r"must be \[B,H,W\]"):
        per_image_scores(PRED_4X4, TRUTH_4X4)


# Two 4x4 images: A is perfect with 2 head pixels; B has 6 + 6 pixels overlapping in 2.
PRED_A = TRUTH_A = masks_from_rows("##..", "....", "....", "....")
PRED_B = masks_from_rows("###.", "###.", "....", "....")
TRUTH_B = masks_from_rows("....", ".##.", ".##.", ".##.")


def test_per_image_and_batch_pooled_scores_differ():
    pred, truth = np.stack([PRED_A, PRED_B]), np.stack([TRUTH_A, TRUTH_B])
    per_image = per_image_scores(pred, truth)
    assert per_image["dice"].tolist() == pytest.approx([1.0, 4 / 12])
    assert per_image["iou"].tolist() == pytest.approx([1.0, 2 / 10])
    pooled = batch_pooled_scores(pred, truth)  # overlap 2 + 2, areas 8 + 8
    assert pooled["dice"] == pytest.approx(2 * 4 / 16)
    assert pooled["iou"] == pytest.approx(4 / 12)


def unit_scale(batch: int):
    return np.full(batch, 0.1), np.ones((batch, 2))


def test_accumulator_means_over_images_and_pools_per_batch():
    one_batch = MetricAccumulator(HC18_MASK_OUTSET_PX)
    one_batch.update(np.stack([PRED_A, PRED_B]), np.stack([TRUTH_A, TRUTH_B]), *unit_scale(2))
    two_batches = MetricAccumulator(HC18_MASK_OUTSET_PX)
    two_batches.update(PRED_A[None], TRUTH_A[None], *unit_scale(1))
    two_batches.update(PRED_B[None], TRUTH_B[None], *unit_scale(1))
    for result in (one_batch.compute(), two_batches.compute()):
        assert result["dice"] == pytest.approx((1 + 4 / 12) / 2)
        assert result["iou"] == pytest.approx((1 + 2 / 10) / 2)
        assert result["pixel_accuracy"] == pytest.approx((16 / 16 + 8 / 16) / 2)
        assert result["paper_pixel_accuracy"] == pytest.approx(24 / 32)
        assert result["n_images"] == 2
    # The paper's Dice depends on how the set was batched.
    assert one_batch.compute()["paper_dice"] == pytest.approx(0.5)
    assert two_batches.compute()["paper_dice"] == pytest.approx((1 + 4 / 12) / 2)
    assert two_batches.compute()["paper_iou"] == pytest.approx((1 + 2 / 10) / 2)


def square(size: int, x0: int, y0: int, side: int = 10) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[y0 : y0 + side, x0 : x0 + side] = True
    return mask


def test_empty_prediction_counts_as_the_image_diagonal_and_its_whole_hc():
    truth = square(64, 20, 20, side=20)
    empty = np.zeros_like(truth)
    # A 64x64 mask of an 800x540 image with 0.1 mm pixels.
    scale = np.array([[800 / 64, 540 / 64]])
    accumulator = MetricAccumulator(HC18_MASK_OUTSET_PX)
    accumulator.update(empty[None], truth[None], [0.1], scale, [123.0], filenames=["x.png"])
    result = accumulator.compute()
    assert result["hd_mm"] == pytest.approx(math.hypot(800, 540) * 0.1)
    assert result["hc_abs_diff_mm"] == pytest.approx(123.0)
    assert result["empty_predictions"] == 1 and result["hc_unmeasurable"] == 1
    assert result["dice"] == 0
    row = accumulator.per_image_rows()[0]
    assert row["filename"] == "x.png" and row["empty_prediction"] is True
    assert math.isnan(row["hc_pred_mm"])
    assert result["per_image"] == accumulator.per_image_rows()


def exact_ellipse(height, width, cx, cy, a, b, angle_deg) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    theta = math.radians(angle_deg)
    u = (xs - cx) * math.cos(theta) + (ys - cy) * math.sin(theta)
    v = -(xs - cx) * math.sin(theta) + (ys - cy) * math.cos(theta)
    return (u / a) ** 2 + (v / b) ** 2 <= 1


def test_hc_difference_through_the_accumulator():
    # Masks at 200x200 of a 400x300 image: each mask pixel is 2 x 1.5 original pixels.
    scale = np.array([[2.0, 1.5], [2.0, 1.5]])
    pixel_size = np.array([0.2, 0.2])
    # In mask pixels: semi-axes (60, 50) along x and y -> (120, 75) original pixels.
    truth = exact_ellipse(200, 200, 100, 100, 60, 50, 0)
    larger = exact_ellipse(200, 200, 100, 100, 65, 50, 0)  # 130 x 75 original pixels
    reference = ramanujan_perimeter(120, 75) * 0.2
    accumulator = MetricAccumulator(hc_mask_outset_px=0.0)
    accumulator.update(
        torch.from_numpy(np.stack([truth, larger])),
        torch.from_numpy(np.stack([truth, truth])),
        pixel_size,
        scale,
        None,  # no reference: HC of the true mask
    )
    rows = accumulator.per_image_rows()
    assert rows[0]["hc_reference_mm"] == pytest.approx(reference, rel=0.005)
    assert rows[0]["hc_abs_diff_mm"] == pytest.approx(0, abs=1e-9)
    expected_diff = (ramanujan_perimeter(130, 75) - ramanujan_perimeter(120, 75)) * 0.2
    assert rows[1]["hc_abs_diff_mm"] == pytest.approx(expected_diff, rel=0.05)
    assert rows[1]["hd_mm"] == pytest.approx(5 * 2 * 0.2, abs=0.2 * 0.2)  # 5 px in x
    # A given reference replaces the true mask's HC; NaN entries fall back to it.
    with_reference = MetricAccumulator(hc_mask_outset_px=0.0)
    with_reference.update(
        np.stack([truth, truth]), np.stack([truth, truth]), pixel_size, scale, [50.0, np.nan]
    )
    rows = with_reference.per_image_rows()
    assert rows[0]["hc_abs_diff_mm"] == pytest.approx(abs(rows[0]["hc_pred_mm"] - 50.0))
    assert rows[1]["hc_abs_diff_mm"] == pytest.approx(0, abs=1e-9)


def test_logits_are_refused_rather_than_guessed_at():
    logits = torch.from_numpy(np.where(PRED_4X4, 2.5, -0.3).astype(np.float32)[None])
    with pytest.raises(TypeError, match="pred must be a bool mask, got torch.float32"):
        MetricAccumulator(HC18_MASK_OUTSET_PX).update(logits, TRUTH_4X4[None], *unit_scale(1))
    from_bool = MetricAccumulator(HC18_MASK_OUTSET_PX)
    from_bool.update(logits > 0, TRUTH_4X4[None], *unit_scale(1))
    assert from_bool.compute()["dice"] == pytest.approx(6 / 9)


def test_accumulator_rejects_mismatched_metadata():
    accumulator = MetricAccumulator(HC18_MASK_OUTSET_PX)
    with pytest.raises(ValueError, match=r"scale_xy must have shape \(1, 2\)"):
        accumulator.update(PRED_4X4[None], TRUTH_4X4[None], [0.1], [1.0, 1.0])
    with pytest.raises(ValueError, match="got 2 filenames for a batch of 1"):
        accumulator.update(PRED_4X4[None], TRUTH_4X4[None], *unit_scale(1), filenames=["a", "b"])
    assert accumulator.compute()["n_images"] == 0
    assert math.isnan(MetricAccumulator(HC18_MASK_OUTSET_PX).compute()["dice"])


def test_overlap_only_accumulator_skips_shape_metrics_but_agrees_on_overlap():
    import numpy as np

    from trainables.evaluation.metrics import MetricAccumulator

    rng = np.random.default_rng(0)
    target = np.zeros((2, 32, 32), bool)
    target[:, 8:24, 6:26] = True
    pred = target ^ (rng.random(target.shape) < 0.05)
    full, quick = (
        MetricAccumulator(HC18_MASK_OUTSET_PX),
        MetricAccumulator(HC18_MASK_OUTSET_PX, shape_metrics=False),
    )
    for acc in (full, quick):
        acc.update(pred, target, [0.1, 0.2], [[1.0, 1.0], [2.0, 1.5]])
    full_result, quick_result = full.compute(), quick.compute()
    assert "hd_mm" in full_result and "hd_mm" not in quick_result
    for key in ("dice", "iou", "pixel_accuracy", "paper_dice", "n_images"):
        assert quick_result[key] == full_result[key]


def test_raw_and_postprocessed_scores_come_from_one_evaluation():
    truth = square(40, 10, 10)
    pred = truth.copy()
    pred[30:34, 30:34] = True  # a 4x4 blob apart from the head: 116 predicted pixels
    scale = np.ones((1, 2))
    accumulator = MetricAccumulator(hc_mask_outset_px=0.0, postprocess="largest")
    accumulator.update(pred[None], truth[None], [0.5], scale, filenames=["a.png"])
    result = accumulator.compute()
    assert result["raw_dice"] == pytest.approx(2 * 100 / (116 + 100))
    assert result["dice"] == pytest.approx(1.0)  # the blob is gone
    # Raw: the blob's far corner (33, 33) is 14 px from the square's corner (19, 19).
    assert result["raw_hd_mm"] == pytest.approx(math.hypot(14, 14) * 0.5)
    assert result["hd_mm"] == 0 and result["hd95_mm"] == 0
    row = accumulator.per_image_rows()[0]
    assert {"raw_dice", "raw_hd95_mm", "raw_hc_abs_diff_mm", "ref_semi_axes_a_mm"} <= set(row)
    assert row["center_x_mm"] == pytest.approx(row["ref_center_x_mm"])  # same mask, same fit
    unchanged = MetricAccumulator(hc_mask_outset_px=0.0)  # postprocess none: raw == output
    unchanged.update(pred[None], truth[None], [0.5], scale)
    same = unchanged.compute()
    assert same["raw_dice"] == same["dice"] == result["raw_dice"]
    with pytest.raises(ValueError, match="unknown postprocess 'convex'"):
        MetricAccumulator(0.0, postprocess="convex")


def test_failure_rate_counts_empty_predictions_whatever_the_threshold():
    truth = exact_ellipse(100, 100, 50, 50, 30, 20, 0)
    larger = exact_ellipse(100, 100, 50, 50, 36, 20, 0)  # ~17 % longer perimeter
    empty = np.zeros_like(truth)
    pred, target = np.stack([truth, larger, empty]), np.stack([truth, truth, truth])
    scale = np.ones((3, 2))
    for hc_fail_mm, failures in ((10.0, 2), (1e6, 1)):  # an empty mask fails at any threshold
        accumulator = MetricAccumulator(0.0, hc_fail_mm=hc_fail_mm)
        accumulator.update(pred, target, [1.0] * 3, scale)
        result = accumulator.compute()
        assert result["hc_fail_rate"] == pytest.approx(failures / 3)
        assert result["raw_hc_fail_rate"] == result["hc_fail_rate"]
        assert result["hc_fail_mm"] == hc_fail_mm
    rows = accumulator.per_image_rows()
    # The bias is over measured heads only; the empty prediction has no signed error.
    assert math.isnan(rows[2]["hc_signed_diff_mm"])
    assert result["hc_signed_diff_mm"] == pytest.approx(rows[1]["hc_signed_diff_mm"] / 2)
    assert rows[1]["hc_signed_diff_mm"] > 10


def test_hc_error_summary_by_hand():
    # Errors 1, 2, 3, 4 and 30 mm plus an empty prediction (error = its reference HC, 180 mm).
    abs_diff = [1.0, 2.0, 3.0, 4.0, 30.0, 180.0]
    signed = [1.0, -2.0, 3.0, -4.0, 30.0, math.nan]
    pred = [181.0, 178.0, 183.0, 176.0, 210.0, math.nan]
    summary = hc_error_summary(abs_diff, signed, pred, hc_fail_mm=10.0)
    assert summary["hc_abs_diff_mm"] == pytest.approx(220 / 6)
    assert summary["hc_abs_diff_mm_median"] == pytest.approx(3.5)
    # P90 of 6 values, linear interpolation: position 0.9 * 5 = 4.5, between 30 and 180.
    assert summary["hc_abs_diff_mm_p90"] == pytest.approx(105.0)
    assert summary["hc_signed_diff_mm"] == pytest.approx(28 / 5)
    assert summary["hc_fail_rate"] == pytest.approx(2 / 6)
    assert hc_failed(abs_diff, pred, 1e9).tolist() == [False] * 5 + [True]
