"""Evaluate a network on a data set: the batched loop every trial's validation and test use
(and `python -m trainables.evaluate`, which scores a trained checkpoint again)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from trainables.core.config import TrialConfig
from trainables.data.arrays import ArrayDataset
from trainables.data.augment import to_network_input
from trainables.evaluation.hc_errors import HC_FAIL_MM
from trainables.evaluation.metrics import MetricAccumulator
from trainables.geometry.postprocess import head_masks

# The summary columns `trainables.evaluate` writes per setting (each also as raw_*, but paper_* and
# n_images).
SUMMARY_COLUMNS = [
    "dice",
    "dice_median",
    "iou",
    "hd_mm",
    "hd95_mm",
    "hc_abs_diff_mm",
    "hc_abs_diff_mm_median",
    "hc_abs_diff_mm_p90",
    "hc_signed_diff_mm",
    "hc_fail_rate",
    "empty_predictions",
]


@torch.inference_mode()
def evaluate_dataset(
    run: Callable[[torch.Tensor], torch.Tensor],
    data: ArrayDataset,
    cfg: TrialConfig,
    device: torch.device,
    shape_metrics: bool = True,
    hc_fail_mm: float = HC_FAIL_MM,
) -> dict:
    """Batched evaluation: per-image metrics averaged over images (plus the paper's variants).

    Args:
        run: the network in eval mode on a batch [B,1,H,W] -> logits [B,1,H,W].
        data: images with masks.
        cfg: the trial config: `eval_batch_size`, `tta`, `postprocess`, `hc_mask_outset_px`.
        shape_metrics: also distances and HC (CPU work per image); the per-epoch validation
            that only chooses the epoch skips them.
        hc_fail_mm: the HC error that counts as a failed measurement.
    Returns:
        `MetricAccumulator.compute()`: the post-processed masks' metrics and the raw ones'.
    """
    acc = MetricAccumulator(
        cfg.hc_mask_outset_px, shape_metrics, postprocess=cfg.postprocess, hc_fail_mm=hc_fail_mm
    )
    for start in range(0, len(data), cfg.eval_batch_size):
        stop = min(start + cfg.eval_batch_size, len(data))
        images = to_network_input(torch.from_numpy(data.images[start:stop]).to(device))
        reference = None if data.reference_hc_mm is None else data.reference_hc_mm[start:stop]
        acc.update(
            head_masks(run, images, cfg.tta),
            torch.from_numpy(data.masks[start:stop]).bool(),
            data.pixel_size_mm[start:stop],
            data.scale_xy[start:stop],
            reference,
            filenames=data.filenames[start:stop],
        )
    return acc.compute()
