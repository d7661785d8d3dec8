"""Binary segmentation metrics, per image and as the paper pooled them, plus HD, HD95 and HC.

Primary metrics are per image, then averaged over images (`dice`, `iou`, `pixel_accuracy`).
The paper code's variants are kept for comparison with the paper: Dice/IoU pooled over all pixels
of a batch (`2*sum(p*y) / (sum(p) + sum(y) + 1e-8)`) then averaged over batches, which depends on
the batch size, and pixel accuracy pooled over the whole set.

Raw and post-processed: the accumulator receives the thresholded network output (raw) and
applies the trial's `postprocess` itself (`trainables.geometry.postprocess`). Unprefixed metrics
are of the trial's output, after post-processing; `raw_*` metrics of the same images before it.
With `postprocess: none` the two are equal.

Conventions: an image where prediction and truth are both empty scores Dice = IoU = 1 and
distances of 0; when exactly one of them is empty the distances are the original image's
diagonal in mm (`trainables.geometry.distances`). Distances and HC are in the ORIGINAL image
frame. HC comes from `ellipse.measure_mask`, corrected for the masks' outset
(`hc_mask_outset_px`); a prediction with no fittable ellipse counts as HC 0 in `hc_abs_diff_mm`
(its error is the whole reference HC), has no `hc_signed_diff_mm` (the bias is over measured
heads) and always counts as a failure in `hc_fail_rate` (the share of images whose HC error
exceeds `hc_fail_mm`, 10 mm by default; the summary is `hc_errors.hc_error_summary`).

Everything is computed on the CPU from bool masks: the caller thresholds scores on their device
(`postprocess.head_masks`), so one bool batch is copied to the host.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from trainables.evaluation.hc_errors import HC_FAIL_MM, hc_error_summary, summary_stat
from trainables.geometry.distances import boundary_distances_mm
from trainables.geometry.ellipse import EllipseMeasurement, measure_mask
from trainables.geometry.postprocess import POSTPROCESS, postprocess_batch

PAPER_EPS = 1e-8  # the paper code's smoothing term
ELLIPSE_FIELDS = ("center_x_mm", "center_y_mm", "semi_axes_a_mm", "semi_axes_b_mm", "angle_rad")


def _as_bool_batch(masks, name: str) -> np.ndarray:
    """A [B,H,W] bool mask batch (torch on any device, or numpy) -> numpy bool.

    Scores are thresholded by the caller, on their device (`logits > 0`), so one bool batch
    is copied to the host; anything else is refused rather than guessed at.
    """
    if isinstance(masks, torch.Tensor):
        if masks.dtype != torch.bool:
            raise TypeError(f"{name} must be a bool mask, got {masks.dtype}; threshold first")
        masks = masks.detach().cpu().numpy()  # the one host copy
    masks = np.asarray(masks)
    if masks.dtype != bool:
        raise TypeError(f"{name} must be a bool mask, got {masks.dtype}; threshold first")
    if masks.ndim != 3:
        raise ValueError(f"{name} must be [B,H,W], got shape {masks.shape}")
    return masks


@dataclass(frozen=True)
class _PixelCounts:
    """Per-image pixel counts ([B] int64 arrays); every score derives from these."""

    overlap: np.ndarray
    pred_area: np.ndarray
    target_area: np.ndarray
    pixels_per_image: int

    @property
    def correct(self) -> np.ndarray:
        # Wrong pixels are the symmetric difference: |P| + |Y| - 2|P and Y|.
        return self.pixels_per_image - (self.pred_area + self.target_area - 2 * self.overlap)


def _pixel_counts(pred, target) -> _PixelCounts:
    pred, target = _as_bool_batch(pred, "pred"), _as_bool_batch(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"pred {pred.shape} and target {target.shape} differ")

    # np.count_nonzero per image is ~50x faster than torch's bool sum on the CPU.
    def count(masks: np.ndarray) -> np.ndarray:
        return np.array([np.count_nonzero(m) for m in masks], dtype=np.int64)

    return _PixelCounts(
        count(pred & target), count(pred), count(target), pred.shape[1] * pred.shape[2]
    )


def _per_image(counts: _PixelCounts) -> dict[str, np.ndarray]:
    area_sum = counts.pred_area + counts.target_area
    union = area_sum - counts.overlap
    both_empty = union == 0
    return {
        "pixel_accuracy": counts.correct / counts.pixels_per_image,
        "dice": np.where(both_empty, 1.0, 2 * counts.overlap / np.maximum(area_sum, 1)),
        "iou": np.where(both_empty, 1.0, counts.overlap / np.maximum(union, 1)),
    }


def _pooled(counts: _PixelCounts) -> dict[str, float]:
    overlap, pred_area = int(counts.overlap.sum()), int(counts.pred_area.sum())
    target_area = int(counts.target_area.sum())
    return {
        "dice": 2 * overlap / (pred_area + target_area + PAPER_EPS),
        "iou": overlap / (pred_area + target_area - overlap + PAPER_EPS),
        "pixel_accuracy": int(counts.correct.sum())
        / (counts.pixels_per_image * len(counts.overlap)),
    }


def _to_numpy(values, name: str, batch: int, width: int | None = None) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values, dtype=np.float64)
    expected = (batch,) if width is None else (batch, width)
    if array.shape != expected:
        raise ValueError(f"{name} must have shape {expected}, got {array.shape}")
    return array


def _ellipse_fields(fit: EllipseMeasurement | None, prefix: str = "") -> dict[str, float]:
    return {prefix + k: getattr(fit, k) if fit else math.nan for k in ELLIPSE_FIELDS}


class MetricAccumulator:
    """Accumulates metrics over an evaluation loader; `compute()` summarises them.

    Args:
        hc_mask_outset_px: passed to `ellipse.measure_mask` for predicted and ground-truth masks
            (HC18 masks, and networks trained on them, reach this far beyond the ellipse).
        shape_metrics: also compute the boundary distances and HC per image (CPU work, ~5 ms
            an image at 512 px); off for the per-epoch validation that only picks the epoch.
        postprocess: applied to each raw mask (`postprocess.POSTPROCESS`); both
            masks are scored, the post-processed one unprefixed, the raw one as `raw_*`.
        hc_fail_mm: the HC error above which an image counts as a failed measurement.
    """

    def __init__(
        self,
        hc_mask_outset_px: float,
        shape_metrics: bool = True,
        postprocess: str = "none",
        hc_fail_mm: float = HC_FAIL_MM,
    ):
        if postprocess not in POSTPROCESS:
            raise ValueError(f"unknown postprocess {postprocess!r}; valid: {list(POSTPROCESS)}")
        self.hc_mask_outset_px = hc_mask_outset_px
        self.shape_metrics = shape_metrics
        self.postprocess = postprocess
        self.hc_fail_mm = hc_fail_mm
        self._rows: list[dict] = []
        self._paper_dice: list[float] = []
        self._paper_iou: list[float] = []
        self._correct_pixels = 0
        self._total_pixels = 0

    def update(
        self,
        pred,
        target,
        pixel_size_mm,
        scale_xy,
        reference_hc_mm=None,
        filenames: Sequence[str] | None = None,
    ) -> None:
        """Add one batch.

        Args:
            pred, target: [B,H,W] bool masks (torch on any device, or numpy); `pred` is the
                raw thresholded output, post-processed here.
            pixel_size_mm: [B] original pixel sizes.
            scale_xy: [B,2] original pixels per mask pixel (sx, sy).
            reference_hc_mm: [B] reference HC, NaN entries or None = use HC of the target mask.
            filenames: optional [B] names, copied into the per-image rows.
        """
        raw, target = _as_bool_batch(pred, "pred"), _as_bool_batch(target, "target")
        output = postprocess_batch(raw, self.postprocess)
        counts = _pixel_counts(output, target)
        raw_counts = counts if output is raw else _pixel_counts(raw, target)
        batch = raw.shape[0]
        pixel_size_mm = _to_numpy(pixel_size_mm, "pixel_size_mm", batch)
        scale_xy = _to_numpy(scale_xy, "scale_xy", batch, 2)
        if reference_hc_mm is None:
            reference_hc_mm = np.full(batch, np.nan)
        reference_hc_mm = _to_numpy(reference_hc_mm, "reference_hc_mm", batch)
        if filenames is not None and len(filenames) != batch:
            raise ValueError(f"got {len(filenames)} filenames for a batch of {batch}")

        pooled = _pooled(counts)
        self._paper_dice.append(pooled["dice"])
        self._paper_iou.append(pooled["iou"])
        self._correct_pixels += int(counts.correct.sum())
        self._total_pixels += counts.pixels_per_image * batch

        scores, raw_scores = _per_image(counts), _per_image(raw_counts)
        for i in range(batch):
            row = {"filename": filenames[i]} if filenames is not None else {}
            raw_row = {name: float(values[i]) for name, values in raw_scores.items()}
            row |= {name: float(values[i]) for name, values in scores.items()}
            if self.shape_metrics:
                size, scale = float(pixel_size_mm[i]), scale_xy[i]
                truth = measure_mask(target[i], size, scale, self.hc_mask_outset_px)
                reference = float(reference_hc_mm[i])
                if math.isnan(reference):
                    reference = truth.hc_mm if truth else math.nan
                shape, fit = self._shape_metrics(output[i], target[i], size, scale, reference)
                row = {**row, "pixel_size_mm": size, **shape, **_ellipse_fields(fit)}
                row |= _ellipse_fields(truth, "ref_")
                if output is not raw:
                    shape = self._shape_metrics(raw[i], target[i], size, scale, reference)[0]
                raw_row |= {k: v for k, v in shape.items() if k != "hc_reference_mm"}
            row |= {f"raw_{name}": value for name, value in raw_row.items()}
            self._rows.append(row)

    def _shape_metrics(self, pred, target, pixel_size_mm, scale_xy, reference_hc_mm):
        """Boundary distances and HC of one image's bool masks, and the predicted ellipse."""
        empty = not pred.any()
        outset = self.hc_mask_outset_px
        fit = None if empty else measure_mask(pred, pixel_size_mm, scale_xy, outset)
        hc_pred = fit.hc_mm if fit else math.nan
        metrics = boundary_distances_mm(pred, target, pixel_size_mm, scale_xy) | {
            "hc_pred_mm": hc_pred,
            "hc_reference_mm": reference_hc_mm,
            # A prediction without a fittable ellipse counts as HC 0: the error is the reference.
            "hc_abs_diff_mm": abs((fit.hc_mm if fit else 0.0) - reference_hc_mm),
            "hc_signed_diff_mm": hc_pred - reference_hc_mm,
            "empty_prediction": empty,
        }
        return metrics, fit

    def per_image_rows(self) -> list[dict]:
        """One dict per image so far: filename (when given), the output's scores, distances, HC
        and ellipse, the reference ellipse (`ref_*`) and the raw mask's scores (`raw_*`)."""
        return [dict(row) for row in self._rows]

    def _summary(self, prefix: str) -> dict:
        def column(key: str) -> np.ndarray:
            return np.array([row[prefix + key] for row in self._rows], dtype=np.float64)

        out = {
            "dice": summary_stat(column("dice"), "mean"),
            "dice_median": summary_stat(column("dice"), "median"),
            "iou": summary_stat(column("iou"), "mean"),
            "pixel_accuracy": summary_stat(column("pixel_accuracy"), "mean"),
        }
        if self.shape_metrics:
            hc_pred = column("hc_pred_mm")
            out |= {key: summary_stat(column(key), "mean") for key in ("hd_mm", "hd95_mm")}
            out |= hc_error_summary(
                column("hc_abs_diff_mm"), column("hc_signed_diff_mm"), hc_pred, self.hc_fail_mm
            )
            out |= {
                "hc_mm_pred_mean": summary_stat(hc_pred, "mean"),
                "hc_unmeasurable": int(np.isnan(hc_pred).sum()),
                "empty_predictions": int(column("empty_prediction").sum()),
            }
        return {prefix + key: value for key, value in out.items()}

    def compute(self) -> dict:
        """Summary over all images so far (NaN where no image contributes).

        Returns:
            dice, dice_median, iou, pixel_accuracy (per image, averaged); paper_dice, paper_iou
            (pooled per batch, averaged over batches); paper_pixel_accuracy (pooled over the
            set); with shape metrics hd_mm, hd95_mm, hc_abs_diff_mm (+ _median, _p90),
            hc_signed_diff_mm, hc_fail_rate and hc_fail_mm, hc_mm_pred_mean, hc_unmeasurable,
            empty_predictions; the same as `raw_*` for the raw masks; n_images; per_image (rows).
        """
        out = self._summary("")
        out |= {
            "paper_dice": float(np.mean(self._paper_dice)) if self._paper_dice else math.nan,
            "paper_iou": float(np.mean(self._paper_iou)) if self._paper_iou else math.nan,
            "paper_pixel_accuracy": (
                self._correct_pixels / self._total_pixels if self._total_pixels else math.nan
            ),
        }
        if self.shape_metrics:
            out["hc_fail_mm"] = self.hc_fail_mm
        out |= self._summary("raw_")
        return out | {"n_images": len(self._rows), "per_image": self.per_image_rows()}
