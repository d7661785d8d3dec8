"""Unlabelled images for self-supervised pretraining (`trainables.training.pretext`): every
image of a folder, recursively, HC18 annotation masks left out, read as grayscale and resized as
the target data is. Labels are never read."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from trainables.core.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def unlabelled_files(folder: str | Path) -> list[Path]:
    """The images of a folder (recursively; HC18 annotation masks are not images)."""
    folder = Path(folder)
    return sorted(
        path
        for path in folder.rglob("*")
        if path.suffix.lower() in IMAGE_SUFFIXES and not path.stem.endswith("_Annotation")
    )


def load_unlabelled(folder: str | Path, image_size: int) -> tuple[np.ndarray, list[str]]:
    """uint8 [N,S,S] grayscale images of a folder, resized as the target data is, and their
    names (relative to the folder). Raises DataError naming every unreadable file."""
    folder = Path(folder)
    files = unlabelled_files(folder)
    if not files:
        raise DataError([f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}"], folder)
    images, problems = [], []
    for path in files:
        buffer = np.fromfile(str(path), dtype=np.uint8)
        pixels = cv2.imdecode(buffer, cv2.IMREAD_GRAYSCALE) if buffer.size else None
        if pixels is None:
            problems.append(f"{path.relative_to(folder)}: unreadable or not an image")
            continue
        images.append(cv2.resize(pixels, (image_size, image_size), interpolation=cv2.INTER_AREA))
    if problems:
        raise DataError(problems, folder)
    return np.stack(images), [str(path.relative_to(folder)) for path in files]
