"""`python -m trainables.predict` applies the trial's own post-processing and TTA by default."""

from __future__ import annotations

import pandas as pd


def test_predict_applies_the_trials_postprocessing(trained, tmp_path, capsys):
    from trainables.data.arrays import default_data_dir
    from trainables.predict import main as predict_main

    out, _ = trained
    command = ["--checkpoint", str(out / "best.pt"), "--data", str(default_data_dir())]
    command += ["--device", "cpu"]
    assert predict_main([*command, "--out", str(tmp_path / "own.csv")]) == 0
    assert "postprocess ellipse, tta on" in capsys.readouterr().out
    raw = [*command, "--out", str(tmp_path / "raw.csv"), "--postprocess", "none", "--tta", "off"]
    assert predict_main(raw) == 0
    assert "postprocess none, tta off" in capsys.readouterr().out
    own, plain = pd.read_csv(tmp_path / "own.csv"), pd.read_csv(tmp_path / "raw.csv")
    assert list(own.columns)[:6] == [
        "filename",
        "center_x_mm",
        "center_y_mm",
        "semi_axes_a_mm",
        "semi_axes_b_mm",
        "angle_rad",
    ]
    assert len(own) == len(plain) == 12
