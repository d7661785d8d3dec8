"""HC18 -> checked, resized arrays in memory, cached as .npz so each node decodes the PNGs once.

Reading and checking the files is `hc18_files`'s; the arrays, their content digests and their
cache are here. Several trials on one node may build the same cache at once: each writes a
private temporary file and renames it into place, so a reader sees a whole file or none.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trainables.core.atomic import atomic_output
from trainables.core.errors import DataError
from trainables.data.hc18_files import Sample, decode_samples, scan_samples

# Bump when decoding/filling/resizing changes, so old caches are not reused.
CACHE_VERSION = 1


@dataclass
class ArrayDataset:
    images: np.ndarray  # uint8 [N, S, S]
    masks: np.ndarray | None  # uint8 {0,1} [N, S, S]; None for test_set
    filenames: list[str]
    pixel_size_mm: np.ndarray  # float64 [N], of the ORIGINAL image
    original_hw: np.ndarray  # int [N, 2] original (height, width)
    reference_hc_mm: np.ndarray | None  # float64 [N]; None for test_set
    digests: dict[str, str] = field(default_factory=dict)  # filename -> content (sample_digests)

    @property
    def scale_xy(self) -> np.ndarray:
        """[N, 2] (W/S, H/S): x_orig = x_resized * scale_xy[i, 0], y likewise with [i, 1]."""
        side = self.images.shape[-1]
        return self.original_hw[:, ::-1].astype(np.float64) / side

    def subset(self, filenames: Sequence[str]) -> ArrayDataset:
        """A copy holding only `filenames`, in the order given. DataError names unknown ones."""
        index = {name: i for i, name in enumerate(self.filenames)}
        unknown = [n for n in filenames if n not in index]
        if unknown:
            raise DataError([f"{n}: not in this data set" for n in unknown])
        rows = np.array([index[n] for n in filenames], dtype=np.int64)
        return ArrayDataset(
            images=self.images[rows],
            masks=None if self.masks is None else self.masks[rows],
            filenames=list(filenames),
            pixel_size_mm=self.pixel_size_mm[rows],
            original_hw=self.original_hw[rows],
            reference_hc_mm=None if self.reference_hc_mm is None else self.reference_hc_mm[rows],
            digests={n: self.digests[n] for n in filenames if n in self.digests},
        )

    def __len__(self) -> int:
        return len(self.filenames)


def default_data_dir() -> Path:
    """The shipped sample of 12 real HC18 images (package data: trainables/sample)."""
    return Path(__file__).resolve().parents[1] / "sample"


def default_cache_dir() -> Path:
    """`$FREEZEFRAME_CACHE` or `~/.cache/freezeframe`: one per node, shared by its trials.

    Never inside the data folder (it may be read-only, shared, or a user's pristine download)
    nor inside the package.
    """
    return Path(os.environ.get("FREEZEFRAME_CACHE", Path.home() / ".cache" / "freezeframe"))


def sample_digests(samples: Sequence[Sample]) -> dict[str, str]:
    """What each sample IS: 16 hex digits of its image's and annotation's bytes and its CSV
    values. A same-size replacement copied with its old mtime (`cp -p`, `rsync -a`) changes
    them; a moved or re-copied folder does not."""
    digests = {}
    for sample in samples:
        h = hashlib.sha256(f"{sample.pixel_size_mm!r}|{sample.reference_hc_mm!r}".encode())
        for path in (sample.image_path, sample.annotation_path):
            if path is not None:
                h.update(path.read_bytes())
        digests[sample.filename] = h.hexdigest()[:16]
    return digests


def digest_of(payload: Any) -> str:
    """16 hex digits of a JSON-able value (sorted keys)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def fingerprint_problems(expected: dict[str, str], actual: dict[str, str]) -> list[str]:
    """What differs between two {filename: digest} maps, one line per file."""
    problems = [f"{name}: missing here" for name in sorted(set(expected) - set(actual))]
    problems += [
        f"{name}: not in the expected data" for name in sorted(set(actual) - set(expected))
    ]
    problems += [
        f"{name}: content differs"
        for name in sorted(set(expected) & set(actual))
        if expected[name] != actual[name]
    ]
    return problems


def _read_npz(path: Path) -> dict[str, np.ndarray] | None:
    """All arrays of an .npz, or None when it is absent or unreadable (then it is rebuilt)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


def _checksum(key: str, arrays: dict[str, np.ndarray]) -> str:
    """A digest of the cache key and every array (name, dtype, shape, bytes): a cache whose
    arrays were replaced or damaged no longer matches it (about 0.1 s per 100 MB)."""
    digest = hashlib.blake2b(key.encode(), digest_size=16)
    for name in sorted(arrays.keys() - {"checksum"}):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
        digest.update(array.tobytes() if array.ndim == 0 else memoryview(array).cast("B"))
    return digest.hexdigest()


def _read_verified(path: Path) -> dict[str, np.ndarray] | None:
    """The cache's arrays if they match the checksum stored with them; None (rebuilt) if not."""
    arrays = _read_npz(path)
    if arrays is not None and str(arrays.get("checksum", "")) != _checksum(path.name, arrays):
        print(f"freezeframe: {path} does not match its checksum; decoding again", file=sys.stderr)
        return None
    return arrays


def _write_npz_atomic(path: Path, arrays: dict[str, np.ndarray]) -> bool:
    """Uncompressed (fast to load), written atomically with its checksum; False (with a note)
    on failure."""
    arrays = {**arrays, "checksum": np.array(_checksum(path.name, arrays))}
    try:
        with atomic_output(path) as f:
            np.savez(f, **arrays)
        return True
    except OSError as err:
        print(f"freezeframe: not caching to {path.parent} ({err})", file=sys.stderr)
        return False


def _cache_path(digests: dict[str, str], subset: str, image_size: int, cache_dir: Path) -> Path:
    """Cache file named by the content of everything the arrays depend on."""
    digest = digest_of([CACHE_VERSION, subset, image_size, sorted(digests.items())])
    return cache_dir / f"hc18_{subset}_{len(digests)}img_{image_size}px_{digest}.npz"


def _to_arrays(data: ArrayDataset, validated: bool) -> dict[str, np.ndarray]:
    """The data set as plain arrays; masks as bits (8x smaller, and faster to unpack than zlib)."""
    nothing = np.zeros(0)
    return {
        "images": data.images,
        "masks_bits": nothing if data.masks is None else np.packbits(data.masks),
        "has_masks": np.array(data.masks is not None),
        "filenames": np.array(data.filenames, dtype=str),
        "pixel_size_mm": data.pixel_size_mm,
        "original_hw": data.original_hw,
        "reference_hc_mm": nothing if data.reference_hc_mm is None else data.reference_hc_mm,
        "has_hc": np.array(data.reference_hc_mm is not None),
        "validated": np.array(validated),
    }


def _from_arrays(arrays: dict[str, np.ndarray] | None, need_validated: bool) -> ArrayDataset | None:
    """Inverse of `_to_arrays`; None for a missing, stale-format or unvalidated cache."""
    try:
        if arrays is None or (need_validated and not arrays["validated"]):
            return None
        images = arrays["images"]
        masks = None
        if arrays["has_masks"]:
            masks = np.unpackbits(arrays["masks_bits"], count=images.size).reshape(images.shape)
        return ArrayDataset(
            images=images,
            masks=masks,
            filenames=[str(name) for name in arrays["filenames"]],
            pixel_size_mm=arrays["pixel_size_mm"],
            original_hw=arrays["original_hw"],
            reference_hc_mm=arrays["reference_hc_mm"] if arrays["has_hc"] else None,
        )
    except (KeyError, ValueError):
        return None


def load_arrays(
    data_dir: str | Path | None,
    image_size: int,
    *,
    subset: str = "training_set",
    filenames: Sequence[str] | None = None,
    cache_dir: str | Path | None = None,
    validate: bool = True,
) -> ArrayDataset:
    """Scan (+validate), decode and resize once; later calls read the .npz cache instead.

    Args:
        data_dir: HC18-layout folder; None = the shipped sample.
        image_size: side S of the square arrays.
        subset: 'training_set' or 'test_set' (no masks, no reference HC).
        filenames: restrict to these files (each must be in the CSV).
        cache_dir: where the .npz goes; None = `default_cache_dir()` ($FREEZEFRAME_CACHE or
            ~/.cache/freezeframe, never the data folder). The key hashes the subset, S and every
            file's name and content digest (image, annotation, CSV row), so an edited or
            replaced file is decoded again whatever its size and mtime.
        validate: run every `validate_samples` check while decoding (a cache written after
            validation is trusted as validated).

    Returns:
        The arrays, rows sorted by filename.

    Raises:
        DataError: listing every offending file; nothing is cached then.
    """
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    samples, problems = scan_samples(data_dir, subset, filenames)
    if problems and not validate:
        raise DataError(problems, data_dir)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    digests = sample_digests(samples) if not problems else {}
    cache_path = _cache_path(digests, subset, image_size, cache_dir)
    # With cheap-check problems the cache is skipped: decoding finds the rest for one error.
    cached = None if problems else _from_arrays(_read_verified(cache_path), validate)
    if cached is not None:
        cached.digests = digests
        return cached

    decoded, decode_problems = decode_samples(samples, image_size, validate, data_dir)
    if problems or decode_problems:  # one error for the cheap and the decoding checks together
        raise DataError(problems + decode_problems, data_dir)
    empty = np.zeros((0, image_size, image_size), np.uint8)
    annotated = subset == "training_set"
    masks = np.stack([d.mask for d in decoded]) if decoded and annotated else empty
    data = ArrayDataset(
        images=np.stack([d.image for d in decoded]) if decoded else empty,
        masks=masks if annotated else None,
        filenames=[s.filename for s in samples],
        pixel_size_mm=np.array([s.pixel_size_mm for s in samples], dtype=np.float64),
        original_hw=np.array([d.original_hw for d in decoded], dtype=np.int64).reshape(-1, 2),
        reference_hc_mm=(
            np.array([s.reference_hc_mm for s in samples], dtype=np.float64) if annotated else None
        ),
        digests=digests,
    )
    _write_npz_atomic(cache_path, _to_arrays(data, validated=validate))
    return data
