"""The HC18 layout on disk: find the samples, decode the PNGs, and check every file.

Layout (the official Zenodo download, or the paper's copy with filled masks):
`DIR/training_set/NNN_HC.png` + `NNN_HC_Annotation.png` + `DIR/training_set_pixel_size_and_HC.csv`,
and for prediction `DIR/test_set/NNN_HC.png` + `DIR/test_set_pixel_size.csv`.
Every check reports ALL offending files in one `DataError`, before anything trains or is cached.
"""

from __future__ import annotations

import csv
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from trainables.core.errors import DataError
from trainables.geometry.masks import MIN_ELLIPSE_IOU, binarize, ellipse_iou, fill_annotation

# Print a progress line only when decoding is slow enough to wonder about (~0.5 s per 100 PNGs).
PROGRESS_MIN_IMAGES = 100

SUBSET_CSV = {
    "training_set": "training_set_pixel_size_and_HC.csv",
    "test_set": "test_set_pixel_size.csv",
}
FILENAME_COL = "filename"
PIXEL_SIZE_COL = "pixel size(mm)"
HC_COL = "head circumference (mm)"
ANNOTATION_SUFFIX = "_Annotation.png"


@dataclass(frozen=True)
class Sample:
    filename: str  # e.g. '010_2HC.png'
    image_path: Path
    annotation_path: Path | None  # None for test_set images
    pixel_size_mm: float
    reference_hc_mm: float | None  # None for test_set


def annotation_name(filename: str) -> str:
    """'010_2HC.png' -> '010_2HC_Annotation.png'."""
    return Path(filename).stem + ANNOTATION_SUFFIX


def _read_csv(csv_path: Path, subset: str) -> tuple[dict[str, tuple[float, float | None]], list]:
    """CSV -> {filename: (pixel_size_mm, hc_mm or None)} and a list of problems."""
    needed = [FILENAME_COL, PIXEL_SIZE_COL] + ([HC_COL] if subset == "training_set" else [])
    rows: dict[str, tuple[float, float | None]] = {}
    problems: list[str] = []
    try:
        with open(csv_path, newline="") as f:
            reader = csv.DictReader(f)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            missing = [c for c in needed if c not in columns]
            if missing:
                return {}, [f"{csv_path.name}: missing column(s) {missing}; found {columns}"]
            for line_no, raw in enumerate(reader, start=2):
                row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
                name = row[FILENAME_COL]
                try:
                    pixel_size = float(row[PIXEL_SIZE_COL])
                    hc = float(row[HC_COL]) if HC_COL in needed else None
                except ValueError:
                    problems.append(f"{csv_path.name} line {line_no} ({name}): not a number")
                    continue
                if not pixel_size > 0:
                    problems.append(f"{csv_path.name} line {line_no} ({name}): pixel size <= 0")
                elif name in rows:
                    problems.append(f"{csv_path.name} line {line_no}: duplicate row for {name}")
                else:
                    rows[name] = (pixel_size, hc)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        return {}, [f"{csv_path.name}: unreadable ({err})"]
    return rows, problems


def scan_samples(
    data_dir: Path, subset: str, filenames: Sequence[str] | None
) -> tuple[list[Sample], list[str]]:
    """(usable samples, problems found); raises at once only when nothing can be read."""
    if subset not in SUBSET_CSV:
        raise ValueError(f"unknown subset {subset!r}; valid: {sorted(SUBSET_CSV)}")
    image_dir, csv_path = data_dir / subset, data_dir / SUBSET_CSV[subset]
    missing = [p for p in (image_dir, csv_path) if not p.exists()]
    if missing:
        names = ", ".join(p.name for p in missing)
        raise DataError([f"{names}: not found (expected the HC18 layout)"], data_dir)
    rows, problems = _read_csv(csv_path, subset)
    if not rows and problems:
        raise DataError(problems, data_dir)

    on_disk = {p.name for p in image_dir.glob("*.png") if not p.name.endswith(ANNOTATION_SUFFIX)}
    if filenames is None:
        selected = sorted(rows)
        problems += [
            f"{subset}/{n}: image has no row in {csv_path.name}"
            for n in sorted(on_disk - set(rows))
        ]
    else:
        selected = sorted(set(filenames))
        problems += [f"{n}: no row in {csv_path.name}" for n in selected if n not in rows]
    samples = []
    for name in selected:
        if name not in rows:
            continue
        if name not in on_disk:
            problems.append(f"{subset}/{name}: listed in {csv_path.name} but the image is missing")
            continue
        annotation = None
        if subset == "training_set":
            annotation = image_dir / annotation_name(name)
            if not annotation.is_file():
                problems.append(f"{subset}/{annotation.name}: annotation missing for {name}")
                continue
        pixel_size, hc = rows[name]
        samples.append(Sample(name, image_dir / name, annotation, pixel_size, hc))
    return samples, problems


def scan_dataset(
    data_dir: str | Path,
    subset: str = "training_set",
    filenames: Sequence[str] | None = None,
) -> list[Sample]:
    """List the samples named in the subset's CSV, sorted by filename (cheap checks only).

    Args:
        data_dir: folder in the HC18 layout.
        subset: 'training_set' (annotated) or 'test_set' (images only, for prediction).
        filenames: restrict to these; each must have a CSV row.

    Returns:
        One `Sample` per image.

    Raises:
        DataError: listing every problem: folder/CSV missing, CSV unreadable or wrong columns,
            images without a CSV row, CSV rows without an image, images without an annotation.
    """
    data_dir = Path(data_dir)
    samples, problems = scan_samples(data_dir, subset, filenames)
    if problems:
        raise DataError(problems, data_dir)
    return samples


def _decode_png(path: str | Path) -> np.ndarray | None:
    """Grayscale uint8 pixels, or None when the file cannot be decoded. (Tests patch this.)"""
    try:
        buffer = np.fromfile(str(path), dtype=np.uint8)
    except OSError:
        return None
    if buffer.size == 0:
        return None
    return cv2.imdecode(buffer, cv2.IMREAD_GRAYSCALE)


def load_image(path: str | Path) -> np.ndarray:
    """uint8 HxW grayscale image. Raises DataError if the file is unreadable or corrupt."""
    image = _decode_png(path)
    if image is None:
        raise DataError([f"{Path(path).name}: unreadable or corrupt PNG"])
    return image


def load_annotation(path: str | Path) -> np.ndarray:
    """bool HxW FILLED head mask (outlines are filled). Raises DataError if unreadable."""
    pixels = _decode_png(path)
    if pixels is None:
        raise DataError([f"{Path(path).name}: unreadable or corrupt PNG"])
    return fill_annotation(binarize(pixels))


@dataclass
class DecodedSample:
    problems: list[str]
    image: np.ndarray | None = None
    mask: np.ndarray | None = None
    original_hw: tuple[int, int] = (0, 0)


def _decode_sample(sample: Sample, image_size: int | None, check: bool) -> DecodedSample:
    """Decode one sample, check it (when asked) and resize it (when image_size is given)."""
    subset = sample.image_path.parent.name
    image = _decode_png(sample.image_path)
    mask = None
    problems = (
        [] if image is not None else [f"{subset}/{sample.filename}: unreadable or corrupt PNG"]
    )
    if sample.annotation_path is not None:
        ann_name = f"{subset}/{sample.annotation_path.name}"
        try:
            mask = load_annotation(sample.annotation_path)
        except DataError:
            problems.append(f"{ann_name}: unreadable or corrupt PNG")
        if check and mask is not None:
            if image is not None and mask.shape != image.shape:
                problems.append(
                    f"{ann_name}: annotation is {mask.shape[1]}x{mask.shape[0]} but its image "
                    f"is {image.shape[1]}x{image.shape[0]} (width x height)"
                )
            if not mask.any():
                problems.append(f"{ann_name}: empty annotation (no head pixels)")
            else:
                iou = ellipse_iou(mask)
                if iou < MIN_ELLIPSE_IOU:
                    problems.append(
                        f"{ann_name}: not an ellipse (IoU {iou:.2f} with the fitted ellipse, "
                        f"need >= {MIN_ELLIPSE_IOU})"
                    )
    if problems or image is None:
        return DecodedSample(problems)
    decoded = DecodedSample([], original_hw=image.shape)
    if image_size is None:
        return decoded
    side = (image_size, image_size)
    decoded.image = cv2.resize(image, side, interpolation=cv2.INTER_AREA)
    if mask is not None:
        decoded.mask = cv2.resize(mask.astype(np.uint8), side, interpolation=cv2.INTER_NEAREST)
    return decoded


def decode_samples(
    samples: Sequence[Sample], image_size: int | None, check: bool, data_dir: Path | None
) -> tuple[list[DecodedSample], list[str]]:
    """Decode in threads (cv2 releases the GIL); also return every problem found."""
    if len(samples) > PROGRESS_MIN_IMAGES:
        print(f"freezeframe: decoding {len(samples)} images from {data_dir} ...", file=sys.stderr)
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        decoded = list(pool.map(lambda s: _decode_sample(s, image_size, check), samples))
    return decoded, [p for d in decoded for p in d.problems]


def validate_samples(samples: Sequence[Sample]) -> None:
    """Decode every image/annotation; raise ONE DataError listing every offending file.

    Checks: unreadable/corrupt PNG, annotation size != image size, empty annotation, and an
    annotation that is not an ellipse (IoU with its fitted ellipse < MIN_ELLIPSE_IOU).
    """
    data_dir = samples[0].image_path.parent.parent if samples else None
    _, problems = decode_samples(samples, image_size=None, check=True, data_dir=data_dir)
    if problems:
        raise DataError(problems, data_dir)
