"""HC error over a set of images: mean, median, p90, bias and the failure rate.

NumPy only, so the report reads its clinical tables without loading torch.
"""

from __future__ import annotations

import math

import numpy as np

# An HC error above this many mm is a failed measurement (the report's default too).
HC_FAIL_MM = 10.0


def summary_stat(values, how: str) -> float:
    """mean / median / p90 of the non-NaN values; NaN when none."""
    data = np.asarray(values, dtype=np.float64)
    data = data[~np.isnan(data)]
    if not len(data):
        return math.nan
    if how == "p90":
        return float(np.percentile(data, 90))
    return float(np.median(data) if how == "median" else data.mean())


def hc_failed(hc_abs_diff_mm, hc_pred_mm, hc_fail_mm: float = HC_FAIL_MM) -> np.ndarray:
    """Per image: a failed HC measurement - an error above `hc_fail_mm`, or no HC at all (an
    empty prediction or one without a fittable ellipse), whatever the threshold."""
    abs_diff = np.asarray(hc_abs_diff_mm, dtype=np.float64)
    unmeasured = np.isnan(np.asarray(hc_pred_mm, dtype=np.float64))
    return unmeasured | (np.nan_to_num(abs_diff, nan=-math.inf) > hc_fail_mm)


def hc_error_summary(
    hc_abs_diff_mm, hc_signed_diff_mm, hc_pred_mm, hc_fail_mm: float = HC_FAIL_MM
) -> dict[str, float]:
    """HC error over images with a reference (per-image arrays, NaN where absent).

    Returns:
        hc_abs_diff_mm (mean), hc_abs_diff_mm_median, hc_abs_diff_mm_p90, hc_signed_diff_mm
        (mean predicted - reference over measured heads: the bias), hc_fail_rate (share of
        images with a reference whose measurement failed, `hc_failed`).
    """
    abs_diff = np.asarray(hc_abs_diff_mm, dtype=np.float64)
    judged = ~np.isnan(abs_diff)
    failed = hc_failed(abs_diff, hc_pred_mm, hc_fail_mm)[judged]
    return {
        "hc_abs_diff_mm": summary_stat(abs_diff, "mean"),
        "hc_abs_diff_mm_median": summary_stat(abs_diff, "median"),
        "hc_abs_diff_mm_p90": summary_stat(abs_diff, "p90"),
        "hc_signed_diff_mm": summary_stat(hc_signed_diff_mm, "mean"),
        "hc_fail_rate": float(failed.mean()) if len(failed) else math.nan,
    }
