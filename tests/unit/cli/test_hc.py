"""`python -m trainables.hc`: one row per annotation, as a module, bad input and unmeasurable masks."""

from __future__ import annotations

import csv
import math
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import REPO
from scoring import HEIGHT, WIDTH, ellipse_mask

from trainables.core.config import HC18_MASK_OUTSET_PX
from trainables.geometry.ellipse import ramanujan_perimeter
from trainables.hc import CSV_COLUMNS, main


def write_dataset(root: Path, ellipses, pixel_sizes) -> list[float]:
    """An HC18-layout folder whose masks reach HC18_MASK_OUTSET_PX beyond each ellipse."""
    image_dir = root / "training_set"
    image_dir.mkdir(parents=True)
    references = []
    with (root / "training_set_pixel_size_and_HC.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filename", "pixel size(mm)", "head circumference (mm)"])
        for index, ((cx, cy, a, b, angle), pixel_size) in enumerate(
            zip(ellipses, pixel_sizes, strict=True)
        ):
            name = f"{index:03d}_HC.png"
            outset = HC18_MASK_OUTSET_PX
            mask = ellipse_mask(cx, cy, a + outset, b + outset, angle)
            cv2.imwrite(str(image_dir / name), np.full((HEIGHT, WIDTH), 90, np.uint8))
            cv2.imwrite(str(image_dir / f"{index:03d}_HC_Annotation.png"), mask * np.uint8(255))
            references.append(ramanujan_perimeter(a, b) * pixel_size)
            writer.writerow([name, pixel_size, f"{references[-1]:.4f}"])
    return references


CLI_ELLIPSES = [(400, 270, 200, 150, 10), (350, 250, 120, 100, 100), (420, 300, 90, 70, 150)]


def test_cli_writes_one_row_per_annotation(tmp_path, capsys):
    references = write_dataset(tmp_path / "hc18", CLI_ELLIPSES, [0.1, 0.2, 0.3])
    out = tmp_path / "out" / "hc.csv"
    assert main(["--data", str(tmp_path / "hc18"), "--out", str(out)]) == 0
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == CSV_COLUMNS
    assert [r["filename"] for r in rows] == ["000_HC.png", "001_HC.png", "002_HC.png"]
    for row, reference, (cx, cy, a, b, _), pixel_size in zip(
        rows, references, CLI_ELLIPSES, [0.1, 0.2, 0.3], strict=True
    ):
        assert float(row["reference_hc_mm"]) == pytest.approx(reference, abs=1e-3)
        assert float(row["hc_mm"]) == pytest.approx(reference, rel=0.003)
        assert float(row["center_x_mm"]) == pytest.approx(cx * pixel_size, abs=0.1 * pixel_size)
        assert float(row["center_y_mm"]) == pytest.approx(cy * pixel_size, abs=0.1 * pixel_size)
        assert float(row["semi_axes_a_mm"]) == pytest.approx(a * pixel_size, abs=0.5 * pixel_size)
        assert float(row["semi_axes_b_mm"]) == pytest.approx(b * pixel_size, abs=0.5 * pixel_size)
    summary = capsys.readouterr().out
    assert "n=3" in summary and "MAE=" in summary


def test_cli_runs_as_a_module(tmp_path):
    write_dataset(tmp_path / "hc18", CLI_ELLIPSES[:1], [0.1])
    out = tmp_path / "hc.csv"
    command = [sys.executable, "-m", "trainables.hc", "--data", str(tmp_path / "hc18")]
    done = subprocess.run(
        command + ["--out", str(out), "--mask-outset-px", "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "n=1 unmeasured=0" in done.stdout
    # Without the outset correction the 1.58 px wider mask measures 2*pi*1.58 px * 0.1 mm more.
    signed = float(re.search(r"mean signed diff=([-+0-9.]+) mm", done.stdout).group(1))
    assert signed == pytest.approx(2 * math.pi * HC18_MASK_OUTSET_PX * 0.1, abs=0.01)


def test_cli_bad_directory_exits_2_without_writing(tmp_path, capsys):
    out = tmp_path / "hc.csv"
    assert main(["--data", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "error:" in capsys.readouterr().err
    assert not out.exists()


def test_cli_leaves_unmeasurable_masks_empty(tmp_path, capsys):
    write_dataset(tmp_path / "hc18", CLI_ELLIPSES[:2], [0.1, 0.1])
    blank = np.zeros((HEIGHT, WIDTH), np.uint8)
    cv2.imwrite(str(tmp_path / "hc18" / "training_set" / "001_HC_Annotation.png"), blank)
    out = tmp_path / "hc.csv"
    assert main(["--data", str(tmp_path / "hc18"), "--out", str(out)]) == 0
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows[1]["hc_mm"] == "" and rows[1]["reference_hc_mm"] != ""
    assert "n=2 unmeasured=1" in capsys.readouterr().out
