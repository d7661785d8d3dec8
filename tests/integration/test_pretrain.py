"""Self-supervised pretraining in a whole study: only the training split's images are read, and a
second study reuses the stored encoder."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from helpers import RUN_PY, TINY


def run(args, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_ADDRESS": "local", "RAY_AUTH_MODE": "disabled"}
    return subprocess.run(
        [sys.executable, str(RUN_PY), *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip


@pytest.mark.slow
def test_self_supervised_pretraining_reads_only_training_images_and_is_reused(tmp_path):
    args = ["--storage", "runs", "--stages", "pretrain", *TINY]
    args += ["--set", "search.pretrain.source=self_supervised"]
    args += ["--set", "search.pretrain.pretext_epochs=2"]
    first = run([*args, "--name", "first"], tmp_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    experiment = tmp_path / "runs" / "first"
    (result,) = [
        json.loads(p.read_text()) for p in (experiment / "results" / "pretrain").glob("*.json")
    ]
    split = pd.read_csv(experiment / "split.csv")
    sides = split.groupby("split")["filename"].apply(set).to_dict()
    used = set(result["pretrain_files"])
    assert used == sides["train"]  # the training split, every image of it
    assert not used & (sides["val"] | sides["test"])  # no validation or test image
    info = json.loads((experiment / "pretrain" / "mobilenet_v2.json").read_text())
    assert info["kind"] == "self_supervised" and info["wall_s"] > 0 and not info["reused_from"]

    second = run([*args, "--name", "second"], tmp_path)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "reusing the encoder" in second.stdout
    reused = tmp_path / "runs" / "second"
    assert not (reused / "results" / "pretrain").exists()  # no pretrain trial ran
    trials = reused / "trials.csv"
    assert not trials.exists() or (pd.read_csv(trials).stage != "pretrain").all()
    copied = json.loads((reused / "pretrain" / "mobilenet_v2.json").read_text())
    assert copied["reused_from"].endswith(info["key"])
    weights = [(e / "pretrain" / "mobilenet_v2.pt").read_bytes() for e in (experiment, reused)]
    assert weights[0] == weights[1]
