"""The data layer: outline filling, one error listing every bad file, the .npz cache, arrays."""

from __future__ import annotations

import os
import shutil

import cv2
import numpy as np
import pytest

from trainables.core.errors import DataError
from trainables.data import hc18_files
from trainables.data.arrays import default_data_dir, load_arrays
from trainables.data.hc18_files import (
    annotation_name,
    load_annotation,
    load_image,
    scan_dataset,
    validate_samples,
)
from trainables.data.synthetic import generate_dataset

CSV_NAME = "training_set_pixel_size_and_HC.csv"


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_outline_annotations_load_as_the_filled_masks(synthetic_dir, synthetic_outline_dir):
    outline_samples = scan_dataset(synthetic_outline_dir)
    assert len(outline_samples) == 8
    for sample in outline_samples:
        raw = cv2.imread(str(sample.annotation_path), cv2.IMREAD_GRAYSCALE) > 0
        filled = load_annotation(synthetic_dir / "training_set" / sample.annotation_path.name)
        assert raw.sum() < 0.1 * filled.sum(), "the outline fixture should hold thin outlines"
        assert iou(load_annotation(sample.annotation_path), filled) > 0.98, sample.filename


def test_real_sample_masks_are_filled_and_pass_validation(sample_dir):
    samples = scan_dataset(sample_dir)
    assert len(samples) == 12
    validate_samples(samples)
    for sample in samples:
        raw = cv2.imread(str(sample.annotation_path), cv2.IMREAD_GRAYSCALE)
        mask = load_annotation(sample.annotation_path)
        assert mask.dtype == bool and mask.shape == load_image(sample.image_path).shape
        assert mask.sum() == (raw > 127).sum()  # a filled mask is returned as it is


def _write_mask(path, mask: np.ndarray) -> None:
    cv2.imwrite(str(path), mask.astype(np.uint8) * 255)


@pytest.fixture
def broken_dir(tmp_path, synthetic_dir):
    """A copy of 12 synthetic images with nine different faults, one per file."""
    root = tmp_path / "broken"
    (root / "training_set").mkdir(parents=True)
    names = [s.filename for s in scan_dataset(synthetic_dir)][:12]
    train = root / "training_set"
    for name in names:
        for file in (name, name.replace(".png", "_Annotation.png")):
            shutil.copy(synthetic_dir / "training_set" / file, train / file)
    csv_lines = (synthetic_dir / CSV_NAME).read_text().splitlines()
    kept = [line for line in csv_lines[1:] if line.split(",")[0] in names]
    (root / CSV_NAME).write_text("\n".join([csv_lines[0], *kept, "999_HC.png,0.1,100.0"]) + "\n")
    faults = {}

    def annotation(i):
        return train / names[i].replace(".png", "_Annotation.png")

    annotation(0).unlink()
    faults["missing annotation"] = annotation(0).name
    (train / names[1]).write_bytes(b"this is not a PNG" * 50)
    faults["garbage image"] = names[1]
    annotation(2).write_bytes(annotation(2).read_bytes()[:60])
    faults["truncated annotation"] = annotation(2).name
    _write_mask(annotation(3), np.ones((100, 100), bool))
    faults["size differs"] = annotation(3).name
    _write_mask(annotation(4), np.zeros((540, 800), bool))
    faults["empty"] = annotation(4).name
    square = np.zeros((540, 800), bool)
    square[100:300, 200:400] = True
    _write_mask(annotation(5), square)
    faults["square"] = annotation(5).name
    blobs = np.zeros((540, 800), np.uint8)
    cv2.circle(blobs, (200, 200), 60, 1, -1)
    cv2.circle(blobs, (550, 300), 90, 1, -1)
    _write_mask(annotation(6), blobs > 0)
    faults["two blobs"] = annotation(6).name
    shutil.copy(train / names[7], train / "500_HC.png")
    shutil.copy(annotation(7), train / "500_HC_Annotation.png")
    faults["no CSV row"] = "500_HC.png"
    faults["CSV row without image"] = "999_HC.png"
    return root, faults, names


def test_every_bad_file_is_listed_in_one_error_and_nothing_is_cached(broken_dir, tmp_path):
    root, faults, _ = broken_dir
    cache_dir = tmp_path / "cache"
    with pytest.raises(DataError) as caught:
        load_arrays(root, 64, cache_dir=cache_dir)
    message = str(caught.value)
    assert message.startswith(str(root))
    for fault, filename in faults.items():
        assert filename in message, f"{fault}: {filename} not named in\n{message}"
    assert len(caught.value.problems) == len(faults)
    assert not cache_dir.exists()


def test_scan_and_validate_each_report_all_their_problems(broken_dir):
    root, faults, names = broken_dir
    with pytest.raises(DataError) as scanned:
        scan_dataset(root)
    cheap = ["missing annotation", "no CSV row", "CSV row without image"]
    assert len(scanned.value.problems) == len(cheap)
    for fault in cheap:
        assert faults[fault] in str(scanned.value), fault
    # The files that pass the cheap checks, decoded: the other six faults, each named.
    readable = scan_dataset(root, filenames=names[1:])
    with pytest.raises(DataError) as validated:
        validate_samples(readable)
    assert len(validated.value.problems) == len(faults) - len(cheap)
    message = str(validated.value)
    assert message.count("not an ellipse") == 2 and "empty annotation" in message
    assert f"{faults['size differs']}: annotation is 100x100 but its image is 800x540" in message


def test_missing_folder_and_wrong_csv_columns_are_named(tmp_path):
    with pytest.raises(DataError, match="not found"):
        scan_dataset(tmp_path / "nowhere")
    (tmp_path / "training_set").mkdir()
    (tmp_path / CSV_NAME).write_text("name,size\n000_HC.png,0.1\n")
    with pytest.raises(DataError, match=r"missing column\(s\) \['filename'"):
        scan_dataset(tmp_path)


def test_unknown_filenames_are_named(synthetic_dir):
    with pytest.raises(DataError, match="nope_HC.png: no row"):
        scan_dataset(synthetic_dir, filenames=["000_HC.png", "nope_HC.png"])


def test_second_load_reads_the_cache_without_decoding(synthetic_dir, tmp_path, monkeypatch):
    cache_dir = tmp_path / "cache"
    first = load_arrays(synthetic_dir, 64, cache_dir=cache_dir)
    assert [p.suffix for p in cache_dir.iterdir()] == [".npz"]  # no tmp file left behind

    def no_decoding(path):
        raise AssertionError(f"decoded {path} although the cache holds it")

    monkeypatch.setattr(hc18_files, "_decode_png", no_decoding)
    second = load_arrays(synthetic_dir, 64, cache_dir=cache_dir)
    assert second.filenames == first.filenames
    for field in ("images", "masks", "pixel_size_mm", "original_hw", "reference_hc_mm"):
        np.testing.assert_array_equal(getattr(second, field), getattr(first, field))

    # A re-copied folder (new times, same bytes) is served from the cache; neither another size
    # nor a folder with an edited file (its old time kept, as `cp -p` does) is.
    with pytest.raises(AssertionError, match="decoded"):
        load_arrays(synthetic_dir, 32, cache_dir=cache_dir)
    monkeypatch.undo()
    edited = tmp_path / "edited"
    shutil.copytree(synthetic_dir, edited)
    image = edited / "training_set" / "000_HC.png"
    os.utime(image, ns=(0, 0))
    monkeypatch.setattr(hc18_files, "_decode_png", no_decoding)
    load_arrays(edited, 64, cache_dir=cache_dir)
    monkeypatch.undo()
    stat = image.stat()
    pixels = cv2.imread(str(image), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(image), 255 - pixels)
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    monkeypatch.setattr(hc18_files, "_decode_png", no_decoding)
    with pytest.raises(AssertionError, match="decoded"):
        load_arrays(edited, 64, cache_dir=cache_dir)


def test_a_cache_whose_arrays_were_replaced_is_rebuilt_not_used(synthetic_dir, tmp_path, capsys):
    # Issue 21, item 8: zeros written over a cached .npz's images were used silently.
    cache_dir = tmp_path / "cache"
    first = load_arrays(synthetic_dir, 64, cache_dir=cache_dir)
    (cached,) = cache_dir.iterdir()
    with np.load(cached) as npz:
        arrays = {name: npz[name] for name in npz.files}
    assert arrays["images"].any()
    arrays["images"] = np.zeros_like(arrays["images"])
    np.savez(cached, **arrays)  # same name, same keys, the old checksum kept
    again = load_arrays(synthetic_dir, 64, cache_dir=cache_dir)
    np.testing.assert_array_equal(again.images, first.images)  # decoded again, not zeros
    assert "does not match its checksum; decoding again" in capsys.readouterr().err
    with np.load(cached) as npz:  # and the cache is written anew
        np.testing.assert_array_equal(npz["images"], first.images)


def test_default_cache_is_per_node_and_never_beside_the_data_or_in_the_package(
    synthetic_dir, tmp_path, monkeypatch
):
    data_dir = tmp_path / "data"
    shutil.copytree(synthetic_dir, data_dir)
    monkeypatch.delenv("FREEZEFRAME_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    load_arrays(data_dir, 32)
    load_arrays(default_data_dir(), 32)
    assert len(list((tmp_path / "home" / ".cache" / "freezeframe").glob("*.npz"))) == 2
    assert not (data_dir / ".freezeframe_cache").exists()
    assert not (default_data_dir() / ".freezeframe_cache").exists()
    monkeypatch.setenv("FREEZEFRAME_CACHE", str(tmp_path / "node_cache"))
    load_arrays(data_dir, 32)
    assert len(list((tmp_path / "node_cache").glob("*.npz"))) == 1


def test_arrays_keep_what_is_needed_to_measure_in_millimetres(sample_dir, tmp_path):
    data = load_arrays(sample_dir, 128, cache_dir=tmp_path)
    assert data.images.shape == data.masks.shape == (12, 128, 128)
    assert data.images.dtype == data.masks.dtype == np.uint8
    assert set(np.unique(data.masks)) == {0, 1}
    assert data.filenames == sorted(data.filenames)
    odd = data.filenames.index("216_HC.png")  # 738 x 541 in the original
    assert data.original_hw[odd].tolist() == [541, 738]
    np.testing.assert_allclose(data.scale_xy[odd], [738 / 128, 541 / 128])
    # The resized mask's area, scaled back, is the original head area (to resizing error).
    for i, name in enumerate(data.filenames):
        original = load_annotation(sample_dir / "training_set" / annotation_name(name)).sum()
        scaled_back = data.masks[i].sum() * data.scale_xy[i].prod()
        assert scaled_back == pytest.approx(original, rel=0.03), name
    assert data.reference_hc_mm[data.filenames.index("754_HC.png")] == pytest.approx(291.3)


def test_subset_selects_rows_and_names_unknown_files(sample_dir, tmp_path):
    data = load_arrays(sample_dir, 32, cache_dir=tmp_path)
    part = data.subset(["731_HC.png", "022_HC.png"])
    assert len(part) == 2 and part.filenames == ["731_HC.png", "022_HC.png"]
    np.testing.assert_array_equal(part.images[1], data.images[data.filenames.index("022_HC.png")])
    assert part.pixel_size_mm[0] == data.pixel_size_mm[data.filenames.index("731_HC.png")]
    assert len(data.subset([])) == 0
    with pytest.raises(DataError, match="nope.png: not in this data set"):
        data.subset(["nope.png"])


def test_test_set_has_no_masks_nor_reference(tmp_path):
    root = generate_dataset(tmp_path / "with_test", 3, with_test_set=4, size=(320, 240))
    data = load_arrays(root, 32, subset="test_set", cache_dir=tmp_path / "cache")
    assert len(data) == 4 and data.images.shape == (4, 32, 32)
    assert data.masks is None and data.reference_hc_mm is None
    assert [s.annotation_path for s in scan_dataset(root, "test_set")] == [None] * 4


@pytest.mark.realdata
def test_all_real_hc18_masks_pass_validation(real_hc18_dir):
    samples = scan_dataset(real_hc18_dir)
    assert len(samples) == 799
    validate_samples(samples)
