"""`python -m trainables.synthetic`: the official layout with a test set."""

from __future__ import annotations

import csv
import subprocess
import sys

import cv2

from trainables.data.hc18_files import scan_dataset


def read_rows(path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_cli_writes_the_official_layout_with_a_test_set(tmp_path):
    out = tmp_path / "cli"
    command = [sys.executable, "-m", "trainables.synthetic", "--out", str(out), "--n", "3"]
    result = subprocess.run(
        command + ["--test-set", "2", "--width", "200", "--height", "150"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "wrote 3 training images (+2 test)" in result.stdout
    assert len(scan_dataset(out)) == 3
    test_samples = scan_dataset(out, "test_set")
    assert len(test_samples) == 2
    assert read_rows(out / "test_set_pixel_size.csv")[0].keys() == {"filename", "pixel size(mm)"}
    image = cv2.imread(str(test_samples[0].image_path), cv2.IMREAD_GRAYSCALE)
    assert image.shape == (150, 200)
