"""`python -m trainables.evaluate`: one checkpoint scored every way, a missing checkpoint refused."""

from __future__ import annotations

import pandas as pd
import pytest

from trainables.evaluate import main as evaluate_main
from trainables.evaluation.evaluate import SUMMARY_COLUMNS


def test_evaluate_cli_scores_one_checkpoint_every_way(trained, tmp_path, capsys):
    out, metrics = trained
    table, per_image = tmp_path / "evaluation.csv", tmp_path / "per_image"
    command = ["--checkpoint", str(out / "best.pt"), "--out", str(table), "--device", "cpu"]
    command += ["--postprocess", "none", "largest", "ellipse", "--tta", "off", "on"]
    assert evaluate_main([*command, "--per-image", str(per_image)]) == 0
    assert "ellipse" in capsys.readouterr().out
    rows = pd.read_csv(table)
    assert len(rows) == 6 and set(rows["postprocess"]) == {"none", "largest", "ellipse"}
    assert {f"raw_{key}" for key in SUMMARY_COLUMNS} <= set(rows)
    for _, group in rows.groupby("tta"):  # one network output per TTA setting
        assert group["raw_dice"].nunique() == 1
        none = group[group["postprocess"] == "none"].iloc[0]
        assert none["dice"] == none["raw_dice"]
    # The trial's own setting (tta on, ellipse) reproduces its test metrics.
    own = rows[rows["tta"] & (rows["postprocess"] == "ellipse")].iloc[0]
    assert own["dice"] == pytest.approx(metrics["test"]["dice"], abs=1e-6)
    assert own["hc_fail_rate"] == pytest.approx(metrics["test"]["hc_fail_rate"])
    assert len(list(per_image.glob("*.csv"))) == 6


def test_evaluate_cli_rejects_a_missing_checkpoint(tmp_path, capsys):
    missing = ["--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path / "x.csv")]
    code = evaluate_main(missing)
    assert code == 2 and "is not a file" in capsys.readouterr().err
