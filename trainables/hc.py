"""Measure the head circumference of every annotation of an HC18-layout data set, and compare
it with the reference HC of its CSV.

    python -m trainables.hc --data DIR --out FILE.csv

The fit (largest component -> ellipse -> Ramanujan perimeter), its conventions and the masks'
outset it corrects (`--mask-outset-px`, HC18's by default) are `trainables.geometry.ellipse`'s.
The CSV (`CSV_COLUMNS`) is written atomically; the summary line gives the MAE and the mean
signed difference to the reference in mm.
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

from trainables.core.atomic import atomic_output
from trainables.core.config import HC18_MASK_OUTSET_PX
from trainables.core.errors import DataError, UserError
from trainables.data.hc18_files import SUBSET_CSV, load_annotation, scan_dataset
from trainables.geometry.ellipse import measure_mask

CSV_COLUMNS = [
    "filename",
    "hc_mm",
    "reference_hc_mm",
    "center_x_mm",
    "center_y_mm",
    "semi_axes_a_mm",
    "semi_axes_b_mm",
    "angle_rad",
]


def measure_dataset(
    data_dir: Path,
    subset: str = "training_set",
    mask_outset_px: float = HC18_MASK_OUTSET_PX,
    progress_every: int = 100,
) -> list[dict]:
    """Measure every annotation of an HC18-layout data set.

    Returns:
        One row per annotated sample (keys: CSV_COLUMNS); ellipse fields are None when the mask
        could not be measured.
    Raises:
        DataError: an unusable folder, or no annotated images in it; ValueError: unknown subset.
    """
    samples = [s for s in scan_dataset(data_dir, subset) if s.annotation_path is not None]
    if not samples:
        raise DataError([f"no annotated images in {Path(data_dir) / subset}"])
    rows = []
    for done, sample in enumerate(samples, start=1):
        measured = measure_mask(
            load_annotation(sample.annotation_path),
            sample.pixel_size_mm,
            (1.0, 1.0),
            mask_outset_px,
        )
        row = {"filename": sample.filename, "reference_hc_mm": sample.reference_hc_mm}
        fields = asdict(measured) if measured else dict.fromkeys(CSV_COLUMNS[3:] + ["hc_mm"])
        rows.append(row | fields)
        if progress_every and (done % progress_every == 0 or done == len(samples)):
            print(f"measured {done}/{len(samples)}", file=sys.stderr, flush=True)
    return rows


def summarise(rows: list[dict]) -> dict:
    """n, unmeasured count, MAE and mean signed difference (measured - reference) in mm."""
    diffs = np.array(
        [
            r["hc_mm"] - r["reference_hc_mm"]
            for r in rows
            if r["hc_mm"] is not None and r["reference_hc_mm"] is not None
        ]
    )
    return {
        "n": len(rows),
        "unmeasured": sum(r["hc_mm"] is None for r in rows),
        "n_with_reference": len(diffs),
        "mae_mm": float(np.abs(diffs).mean()) if len(diffs) else float("nan"),
        "mean_signed_diff_mm": float(diffs.mean()) if len(diffs) else float("nan"),
    }


def write_csv(rows: list[dict], path: Path) -> None:
    """Write atomically: a failed run leaves no partial file behind."""
    with atomic_output(path, "w") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row[k] is None else row[k] for k in CSV_COLUMNS})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainables.hc",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Measure the head circumference of every annotation mask of an HC18-layout\n"
        "data set (ellipse fit + Ramanujan perimeter) and compare it with the reference HC.",
        epilog="output columns:\n  "
        + ",".join(CSV_COLUMNS)
        + "\nellipse conventions (HC18 submission):\n"
        "  centre in mm from the centre of the top-left pixel; semi_axes_a_mm is the\n"
        "  semi-major axis, along angle_rad; angle_rad in [0, pi) from +x towards +y\n"
        "  (image rows grow downwards). Empty cells: mask could not be measured.\n"
        "exit status: 0 ok, 2 unusable data folder (nothing written).",
    )
    parser.add_argument("--data", required=True, type=Path, help="HC18-layout folder")
    parser.add_argument("--out", required=True, type=Path, help="CSV file to write")
    parser.add_argument(
        "--subset",
        default="training_set",
        choices=sorted(SUBSET_CSV),
        help="image folder inside --data (default %(default)s, the annotated one)",
    )
    parser.add_argument(
        "--mask-outset-px",
        type=float,
        default=HC18_MASK_OUTSET_PX,
        help="how far the masks' edge lies outside the annotated ellipse, in original "
        "pixels (default %(default)s: HC18 filled masks; 0 = measure masks as drawn)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        rows = measure_dataset(args.data, args.subset, args.mask_outset_px)
        write_csv(rows, args.out)
    except (UserError, OSError) as err:  # OSError: --out cannot be written
        print(f"error: {err}", file=sys.stderr)
        return 2
    summary = summarise(rows)
    print(
        f"n={summary['n']} unmeasured={summary['unmeasured']} "
        f"MAE={summary['mae_mm']:.3f} mm mean signed diff={summary['mean_signed_diff_mm']:+.3f} mm "
        f"(n with reference={summary['n_with_reference']}) -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
