"""Binary segmentation metrics, per image and as the paper pooled them, plus HD and HC.

Primary metrics are per image, then averaged over images (`dice`, `iou`, `pixel_accuracy`).
The paper code's variants are kept for comparison with the paper: Dice/IoU pooled over all pixels
of a batch (`2*sum(p*y) / (sum(p) + sum(y) + 1e-8)`) then averaged over batches, which depends on
the batch size, and pixel accuracy pooled over the whole set.

Conventions: an image where prediction and truth are both empty scores Dice = IoU = 1 and a
Hausdorff distance of 0; when exactly one of them is empty the Hausdorff distance is the original
image's diagonal in mm. Distances and HC are in the ORIGINAL image frame: a mask pixel maps to
original pixels through `scale_xy` = (sx, sy), then to mm through the pixel size. HC comes from
`hc.measure_mask`, by default corrected for the HC18 masks' outset (see `trainables/hc.py`); a
prediction with no fittable ellipse counts as HC 0, so its error is the whole reference HC.

Everything is computed on the CPU from bool masks: the caller thresholds logits on their device
(`logits > 0`), so one bool batch is copied to the host.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from scipy.spatial.distance import directed_hausdorff

from trainables.hc import measure_mask, to_original_xy

PAPER_EPS = 1e-8  # the paper code's smoothing term


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


def per_image_scores(pred, target) -> dict[str, torch.Tensor]:
    """Pixel accuracy, Dice and IoU of each image, computed on the CPU.

    Args:
        pred, target: [B,H,W] bool masks (torch on any device, or numpy; predictions already
            thresholded).
    Returns:
        {'pixel_accuracy', 'dice', 'iou'}: float64 CPU tensors of shape [B]. Both masks empty
        gives Dice = IoU = 1.
    """
    return {k: torch.from_numpy(v) for k, v in _per_image(_pixel_counts(pred, target)).items()}


def batch_pooled_scores(pred, target) -> dict[str, float]:
    """The paper's Dice/IoU: every pixel of the batch pooled into one score.

    Returns:
        {'dice', 'iou', 'pixel_accuracy'} as floats; an all-empty batch scores Dice = IoU = 0,
        as the paper code's formula gives.
    """
    return _pooled(_pixel_counts(pred, target))


def boundary_pixels(mask: np.ndarray) -> np.ndarray:
    """Mask pixels with a 4-neighbour outside the mask (the image border counts as outside).

    Returns:
        (N, 2) int array of (x, y) pixel coordinates.
    """
    inside = np.asarray(mask, dtype=bool)
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    # Zero padding makes pixels on the image border boundary pixels.
    eroded = cv2.erode(np.pad(inside.astype(np.uint8), 1), cross)[1:-1, 1:-1].astype(bool)
    ys, xs = np.nonzero(inside & ~eroded)
    return np.stack([xs, ys], axis=1)


def image_diagonal_mm(shape_hw: Sequence[int], pixel_size_mm: float, scale_xy) -> float:
    """Diagonal of the original image whose resized mask has shape (H, W)."""
    return math.hypot(shape_hw[1] * scale_xy[0], shape_hw[0] * scale_xy[1]) * pixel_size_mm


def hausdorff_mm(pred: np.ndarray, target: np.ndarray, pixel_size_mm: float, scale_xy) -> float:
    """Symmetric Hausdorff distance between the two masks' boundaries, in mm.

    Args:
        pred, target: HxW bool masks (possibly resized).
        pixel_size_mm: original pixel size.
        scale_xy: (sx, sy) original pixels per mask pixel.
    Returns:
        The distance; 0 when both are empty, the original image diagonal when one is.
    """
    pred_points, target_points = boundary_pixels(pred), boundary_pixels(target)
    if len(pred_points) == 0 and len(target_points) == 0:
        return 0.0
    if len(pred_points) == 0 or len(target_points) == 0:
        return image_diagonal_mm(pred.shape, pixel_size_mm, scale_xy)
    pred_mm = to_original_xy(pred_points, scale_xy) * pixel_size_mm
    target_mm = to_original_xy(target_points, scale_xy) * pixel_size_mm
    # seed=0: directed_hausdorff shuffles for speed; the distance itself is exact either way.
    return max(
        directed_hausdorff(pred_mm, target_mm, seed=0)[0],
        directed_hausdorff(target_mm, pred_mm, seed=0)[0],
    )


def _to_numpy(values, name: str, batch: int, width: int | None = None) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values, dtype=np.float64)
    expected = (batch,) if width is None else (batch, width)
    if array.shape != expected:
        raise ValueError(f"{name} must have shape {expected}, got {array.shape}")
    return array


class MetricAccumulator:
    """Accumulates metrics over an evaluation loader; `compute()` summarises them.

    Args:
        hc_mask_outset_px: passed to `hc.measure_mask` for predicted and ground-truth masks
            (HC18 masks, and networks trained on them, reach this far beyond the ellipse).
        shape_metrics: also compute the Hausdorff distance and HC per image (CPU work, ~5 ms
            an image at 512 px); off for the per-epoch validation that only picks the epoch.
    """

    def __init__(self, hc_mask_outset_px: float, shape_metrics: bool = True):
        self.hc_mask_outset_px = hc_mask_outset_px
        self.shape_metrics = shape_metrics
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
            pred, target: [B,H,W] bool masks (torch on any device, or numpy).
            pixel_size_mm: [B] original pixel sizes.
            scale_xy: [B,2] original pixels per mask pixel (sx, sy).
            reference_hc_mm: [B] reference HC, NaN entries or None = use HC of the target mask.
            filenames: optional [B] names, copied into the per-image rows.
        """
        pred, target = _as_bool_batch(pred, "pred"), _as_bool_batch(target, "target")
        counts = _pixel_counts(pred, target)
        batch = pred.shape[0]
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

        scores = _per_image(counts)
        for i in range(batch):
            row = {"filename": filenames[i]} if filenames is not None else {}
            row |= {name: float(values[i]) for name, values in scores.items()}
            if self.shape_metrics:
                row |= self._shape_metrics(
                    pred[i],
                    target[i],
                    float(pixel_size_mm[i]),
                    scale_xy[i],
                    float(reference_hc_mm[i]),
                )
            self._rows.append(row)

    def _shape_metrics(self, pred, target, pixel_size_mm, scale_xy, reference_hc_mm) -> dict:
        """Hausdorff distance and HC of one image's bool masks."""
        empty = not pred.any()
        outset = self.hc_mask_outset_px
        fit = None if empty else measure_mask(pred, pixel_size_mm, scale_xy, outset)
        if math.isnan(reference_hc_mm):
            truth = measure_mask(target, pixel_size_mm, scale_xy, outset)
            reference_hc_mm = truth.hc_mm if truth else math.nan
        return {
            "hd_mm": hausdorff_mm(pred, target, pixel_size_mm, scale_xy),
            "hc_pred_mm": fit.hc_mm if fit else math.nan,
            "hc_reference_mm": reference_hc_mm,
            # A prediction without a fittable ellipse counts as HC 0: the error is the reference.
            "hc_abs_diff_mm": abs((fit.hc_mm if fit else 0.0) - reference_hc_mm),
            "empty_prediction": empty,
        }

    def per_image_rows(self) -> list[dict]:
        """One dict per image so far (filename when given, scores, hd_mm, HC fields)."""
        return [dict(row) for row in self._rows]

    def compute(self) -> dict:
        """Summary over all images so far (NaN where no image contributes).

        Returns:
            dice, iou, pixel_accuracy (per image, averaged); paper_dice, paper_iou (pooled per
            batch, averaged over batches); paper_pixel_accuracy (pooled over the set); hd_mm;
            hc_abs_diff_mm (over images with a reference); hc_mm_pred_mean (over measurable
            predictions); hc_unmeasurable, empty_predictions, n_images (ints); per_image (rows).
        """

        def mean(key: str) -> float:
            values = [row[key] for row in self._rows if not math.isnan(row[key])]
            return float(np.mean(values)) if values else math.nan

        overlap = {
            "dice": mean("dice"),
            "iou": mean("iou"),
            "pixel_accuracy": mean("pixel_accuracy"),
            "paper_dice": float(np.mean(self._paper_dice)) if self._paper_dice else math.nan,
            "paper_iou": float(np.mean(self._paper_iou)) if self._paper_iou else math.nan,
            "paper_pixel_accuracy": (
                self._correct_pixels / self._total_pixels if self._total_pixels else math.nan
            ),
            "n_images": len(self._rows),
            "per_image": self.per_image_rows(),
        }
        if not self.shape_metrics:
            return overlap
        return overlap | {
            "hd_mm": mean("hd_mm"),
            "hc_abs_diff_mm": mean("hc_abs_diff_mm"),
            "hc_mm_pred_mean": mean("hc_pred_mm"),
            "hc_unmeasurable": sum(math.isnan(row["hc_pred_mm"]) for row in self._rows),
            "empty_predictions": sum(row["empty_prediction"] for row in self._rows),
        }
