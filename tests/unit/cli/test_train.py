"""`python -m trainables.train`: bad data and config stop everything before a file is written,
no silent CPU fallback, and predictions become HC18 submission rows."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import torch
from helpers import REPO

from search import cli
from trainables.train import main as train_main

SMOKE = REPO / "configs" / "smoke.yaml"


def test_bad_data_fails_before_anything_is_written(synthetic_dir, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(synthetic_dir, broken)
    first = sorted((broken / "training_set").glob("*_HC.png"))[0]
    first.write_bytes(b"not a png")
    out = tmp_path / "out"
    code = train_main(["--config", str(SMOKE), "--data", str(broken), "--out", str(out)])
    assert code == 2
    assert first.name in capsys.readouterr().err
    assert not out.exists()


def test_bad_config_names_the_key(tmp_path, capsys):
    out = tmp_path / "out"
    code = train_main(["--config", str(SMOKE), "--out", str(out), "--set", "epoch=3"])
    assert code == 2
    assert "epoch: unknown key" in capsys.readouterr().err
    assert not out.exists()


def test_train_and_predict_cli(synthetic_dir, tmp_path):
    from trainables.data.synthetic import generate_dataset

    data = generate_dataset(tmp_path / "hc18", 12, seed=3, with_test_set=3)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "trainables.train", "--config", str(SMOKE), "--data", str(data)]
    cmd += ["--out", str(out), "--strategy", "decoder_4", "--seed", "1", "--quiet"]
    cmd += ["--set", "image_size=32", "--set", "epochs=1"]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["strategy"], metrics["seed"], metrics["trainable_params"]) == (
        "decoder_4",
        1,
        6976,
    )

    csv = tmp_path / "submission.csv"
    predict = [sys.executable, "-m", "trainables.predict", "--checkpoint", str(out / "best.pt")]
    result = subprocess.run(
        predict + ["--data", str(data), "--out", str(csv)],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = pd.read_csv(csv)
    assert list(rows.columns) == [
        "filename",
        "center_x_mm",
        "center_y_mm",
        "semi_axes_a_mm",
        "semi_axes_b_mm",
        "angle_rad",
        "hc_mm",
    ]
    assert len(rows) == 3 and "test_set" in result.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_cuda_fails_before_training_naming_cuda(tmp_path, capsys):
    code = train_main(["--set", "device=cuda", "--out", str(tmp_path / "trial")])
    assert code == 2
    err = capsys.readouterr().err
    assert "device='cuda'" in err and "sees no CUDA device" in err
    assert not (tmp_path / "trial").exists()
    # The search refuses a CUDA trial that Ray would give no GPU, before Ray starts.
    code = cli.main(["--storage", str(tmp_path / "runs"), "--set", "trial.device=cuda"])
    assert (
        code == 2 and "trial.device=cuda, but search.resources.gpu is 0" in capsys.readouterr().err
    )
