"""[from pretext.py]
Self-supervised pretraining: the U-Net learns to restore corrupted images; labels are never read.

Where ImageNet weights cannot be downloaded, the encoder can still start from features of the
target domain: the whole U-Net (encoder, decoder, head) is trained to restore images from a
corrupted copy, then only its encoder is kept (`trainables.models.load_encoder_checkpoint`
reads the `encoder.*` weights of the checkpoint this writes).

Two well-known objectives (`method`):
- `masked`: masked-image modelling as inpainting (Pathak et al. 2016, "Context Encoders"; He
  et al. 2022, MAE): square patches are replaced by grey and the loss is the squared error on
  them (plus a tenth of it on the visible pixels);
- `denoise`: a denoising autoencoder (Vincent et al. 2008): Gaussian noise is added and the
  loss is the squared error on every pixel.
Images get the paper's augmentation first (rotation, flips), so the encoder sees the poses it
will see in fine-tuning. The run writes `last.pt` (resumable) and `best.pt` (the latest model:
there is no validation label to choose an epoch by) every epoch, like `trainables.train`.
"""

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

