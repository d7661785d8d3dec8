"""The report's clinical figures for the best strategy: a Bland-Altman plot of predicted against
reference head circumference, and its worst test images with both ellipses drawn.

Both read per-image rows (`search.report.clinical.per_image_long`); the worst-images figure
also reads the test images themselves from the data folder, and draws the ellipses the rows
carry (predicted: the post-processed mask's; reference: the ground-truth mask's, both as
`trainables.geometry.ellipse.measure_mask` returns them), so no network is needed. Sizes are for
a paper column pair (7 in wide, 300 dpi), like `plots`.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import cv2  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from trainables.data.hc18_files import load_image  # noqa: E402

DPI = 300
REFERENCE_RGB = (0, 255, 0)  # green: the reference ellipse
PREDICTION_RGB = (255, 0, 255)  # magenta: the predicted ellipse
IMAGE_FOLDER = "training_set"  # HC18 layout: where annotated images live


def bland_altman(rows: pd.DataFrame) -> dict:
    """Bias and 95% limits of agreement of predicted - reference HC over measured heads.

    Returns:
        n (measured heads with a reference), unmeasured, bias, sd (n-1), loa_low, loa_high
        (bias -+ 1.96 sd), mean_mm and diff_mm (the points).
    """
    pred, ref = rows["hc_pred_mm"].astype(float), rows["hc_reference_mm"].astype(float)
    usable = pred.notna() & ref.notna()
    diff, mean = (pred - ref)[usable].to_numpy(), ((pred + ref) / 2)[usable].to_numpy()
    bias = float(diff.mean()) if len(diff) else math.nan
    sd = float(diff.std(ddof=1)) if len(diff) > 1 else math.nan
    return {
        "n": int(usable.sum()),
        "unmeasured": int((pred.isna() & ref.notna()).sum()),
        "bias": bias,
        "sd": sd,
        "loa_low": bias - 1.96 * sd,
        "loa_high": bias + 1.96 * sd,
        "mean_mm": mean,
        "diff_mm": diff,
    }


def bland_altman_figure(rows: pd.DataFrame, strategy: str, hc_fail_mm: float):
    """Predicted - reference HC against their mean, one point per (seed, image)."""
    summary = bland_altman(rows)
    fig, ax = plt.subplots(figsize=(7.0, 4.0), dpi=DPI)
    ax.scatter(summary["mean_mm"], summary["diff_mm"], s=8, alpha=0.6, color="#1f5fa8", lw=0)
    ax.axhline(summary["bias"], color="black", lw=1, label=f"bias {summary['bias']:+.2f} mm")
    for key in ("loa_low", "loa_high"):
        ax.axhline(summary[key], color="black", lw=0.8, ls="--")
    ax.axhline(math.nan, color="black", lw=0.8, ls="--", label="95% limits of agreement")
    for sign in (-1, 1):
        ax.axhline(sign * hc_fail_mm, color="#c0392b", lw=0.8, ls=":")
    ax.axhline(math.nan, color="#c0392b", lw=0.8, ls=":", label=f"± {hc_fail_mm:g} mm (failure)")
    ax.set_xlabel("Mean of predicted and reference HC (mm)", fontsize=9)
    ax.set_ylabel("Predicted - reference HC (mm)", fontsize=9)
    seeds = rows["seed"].nunique() if "seed" in rows else 1
    ax.set_title(
        f"Bland-Altman, {strategy}: {summary['n']} measurements ({seeds} seed(s)), "
        f"{summary['unmeasured']} without a measurable head",
        fontsize=9,
    )
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig, summary


def worst_rows(rows: pd.DataFrame, count: int = 5) -> pd.DataFrame:
    """The `count` rows with the largest HC error, one per image (its worst seed)."""
    judged = rows[rows["hc_abs_diff_mm"].notna()]
    ordered = judged.sort_values("hc_abs_diff_mm", ascending=False, kind="stable")
    return ordered.drop_duplicates("filename").head(count).reset_index(drop=True)


def _draw_ellipse(image: np.ndarray, row, prefix: str, color, thickness: int) -> None:
    """Draw the row's ellipse (mm, HC18 conventions) on an RGB image, sub-pixel placed."""
    keys = [f"{prefix}{k}" for k in ("center_x_mm", "center_y_mm", "semi_axes_a_mm")]
    keys += [f"{prefix}semi_axes_b_mm", f"{prefix}angle_rad"]
    if any(k not in row or pd.isna(row[k]) for k in keys):
        return
    size, shift = float(row["pixel_size_mm"]), 4  # 4 fractional bits: 1/16 px
    cx, cy, a, b = (float(row[k]) / size * 2**shift for k in keys[:4])
    cv2.ellipse(
        image,
        (round(cx), round(cy)),
        (round(a), round(b)),
        math.degrees(float(row[keys[4]])),
        0,
        360,
        color,
        thickness,
        cv2.LINE_AA,
        shift,
    )


def outlined_image(path: Path, row, thickness: int | None = None) -> np.ndarray:
    """The image as RGB with the reference (green) and predicted (magenta) ellipses."""
    gray = load_image(path)
    image = np.repeat(gray[:, :, None], 3, axis=2).copy()
    thickness = thickness or max(2, round(max(gray.shape) / 200))
    _draw_ellipse(image, row, "ref_", REFERENCE_RGB, thickness)
    _draw_ellipse(image, row, "", PREDICTION_RGB, thickness)
    return image


def worst_images_figure(rows: pd.DataFrame, data_dir: Path, strategy: str, count: int = 5):
    """The worst `count` test images by HC error, outlines drawn, one panel each.

    Raises:
        FileNotFoundError: an image is not in `data_dir` (naming the first missing one).
    """
    worst = worst_rows(rows, count)
    paths = [Path(data_dir) / IMAGE_FOLDER / name for name in worst["filename"]]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{missing[0]} not found")
    columns = 3
    lines = max(1, math.ceil(len(worst) / columns))
    fig, axes = plt.subplots(lines, columns, figsize=(7.0, 2.1 * lines + 0.4), dpi=DPI)
    axes = np.atleast_1d(axes).ravel()
    for ax, (_, row), path in zip(axes, worst.iterrows(), paths, strict=False):
        ax.imshow(outlined_image(path, row), interpolation="antialiased")
        hc = "no head found" if pd.isna(row["hc_pred_mm"]) else f"{row['hc_pred_mm']:.0f} mm"
        ax.set_title(
            f"{row['filename']} (seed {int(row['seed'])})\nHC {hc} vs {row['hc_reference_mm']:.0f}"
            f" mm, error {row['hc_abs_diff_mm']:.1f} mm, Dice {row['dice']:.2f}",
            fontsize=6,
        )
    for ax in axes:
        ax.axis("off")
    fig.suptitle(
        f"Worst test images of {strategy} by HC error: reference green, prediction magenta",
        fontsize=8,
    )
    fig.tight_layout()
    return fig


def save(fig, path: Path) -> None:
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
