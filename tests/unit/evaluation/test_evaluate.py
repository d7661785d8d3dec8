"""Clinical evaluation of one trial: its raw and post-processed metrics in metrics.json and its
per-image table (the `trained` fixture, conftest.py, runs the trial once)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from trainables.core.files import TEST_PER_IMAGE

CLINICAL_KEYS = {
    "dice_median",
    "hd95_mm",
    "hc_abs_diff_mm_median",
    "hc_abs_diff_mm_p90",
    "hc_signed_diff_mm",
    "hc_fail_rate",
}


def test_raw_and_postprocessed_metrics_land_in_metrics_json(trained):
    out, metrics = trained
    stored = json.loads((out / "metrics.json").read_text())
    for side in ("val", "test"):
        keys = set(stored[side])
        assert keys >= CLINICAL_KEYS and {f"raw_{k}" for k in CLINICAL_KEYS} <= keys
        assert {"dice", "raw_dice", "hc_fail_mm"} <= keys
    assert stored["config"]["postprocess"] == "ellipse" and stored["config"]["tta"] is True
    rows = pd.read_csv(out / TEST_PER_IMAGE)
    assert len(rows) == metrics["split_sizes"]["test"]
    ellipse = ["center_x_mm", "center_y_mm", "semi_axes_a_mm", "semi_axes_b_mm", "angle_rad"]
    expected = {"filename", "pixel_size_mm", "dice", "raw_dice", "hd95_mm", "hc_signed_diff_mm"}
    assert expected | set(ellipse) | {f"ref_{k}" for k in ellipse} <= set(rows)
    assert rows["dice"].mean() == pytest.approx(metrics["test"]["dice"])
    assert rows["raw_dice"].mean() == pytest.approx(metrics["test"]["raw_dice"])
