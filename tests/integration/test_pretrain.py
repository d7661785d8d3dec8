"""Pretraining sources: self-supervised on the target's training split only, a folder of
images, reuse of a stored encoder by a second study, unreadable sources refused early."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import RUN_PY, TINY

import search.driver.study
from search import cli
from trainables.core.config import TrialConfig
from trainables.data.unlabelled import load_unlabelled
from trainables.nets.models import build_model
from trainables.training.pretext import corrupt, run_pretext


def test_masked_corruption_hides_patches_and_weights_them():
    images = torch.rand(4, 1, 64, 64)
    generator = torch.Generator().manual_seed(0)
    inputs, weight = corrupt(images, "masked", generator)
    hidden = weight == 1.0
    assert 0.3 < hidden.float().mean() < 0.9  # about MASK_RATIO of the 8 x 8 patches
    assert torch.allclose(inputs[hidden], torch.full_like(inputs[hidden], 0.5))
    assert torch.equal(inputs[~hidden], images[~hidden])
    noisy, ones = corrupt(images, "denoise", generator)
    assert torch.all(ones == 1) and not torch.equal(noisy, images)
    with pytest.raises(ValueError, match="unknown pretext method 'blur'"):
        corrupt(images, "blur", generator)


def test_pretext_training_restores_better_and_yields_an_encoder(tmp_path, sample_dir):
    from trainables.data.trial_data import load_trial_data

    cfg = TrialConfig(strategy="all", encoder_weights="none", image_size=32, epochs=3,
                      batch_size=4, lr=1e-3, num_threads=1)  # fmt: skip
    images = load_trial_data(cfg).train.images  # no masks are passed: labels cannot be read
    metrics = run_pretext(cfg, tmp_path, images, "masked", verbose=False)
    losses = [record["train_loss"] for record in metrics["history"]]
    assert losses[-1] < losses[0], losses
    assert metrics["pretext_images"] == len(images)
    model = build_model("unet_mobilenet_v2", str(tmp_path / "best.pt"))  # its encoder loads
    state = torch.load(tmp_path / "best.pt", weights_only=True)["model"]
    first = next(k for k in state if k.startswith("encoder."))
    assert torch.equal(model.state_dict()[first], state[first])


def test_an_image_folder_loads_every_image_and_names_the_unreadable(tmp_path, sample_dir):
    import shutil

    for png in sorted((sample_dir / "training_set").glob("*HC.png"))[:3]:
        shutil.copy(png, tmp_path / png.name)
    (tmp_path / "sub").mkdir()
    shutil.copy(png, tmp_path / "sub" / "x.png")
    images, names = load_unlabelled(tmp_path, 32)
    assert images.shape == (4, 32, 32) and images.dtype == np.uint8
    assert "sub/x.png" in names
    (tmp_path / "broken.png").write_bytes(b"not a png")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(Exception, match=r"broken\.png: unreadable[\s\S]*empty\.jpg: unreadable"):
        load_unlabelled(tmp_path, 32)


def test_an_unreadable_source_fails_before_ray_naming_the_files(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(search.driver.study, "connect_ray", lambda *a: pytest.fail("Ray started"))
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "scan1.png").write_bytes(b"\x89PNG broken")
    storage = tmp_path / "runs"
    code = cli.main(["--storage", str(storage), "--set", f"search.pretrain.source={folder}", *TINY])
    err = capsys.readouterr().err
    assert code == 2 and "search.pretrain.source" in err and "scan1.png: unreadable" in err
    assert not storage.exists()


def test_a_node_whose_pretraining_folder_differs_from_the_drivers_fails_the_trial(
    tmp_path, sample_dir
):
    import shutil

    from search.driver.config import load_config
    from search.driver.stages.common import StageRunner
    from search.driver.stages.pretrain import pretrain_spec
    from search.experiment.folder import Experiment
    from search.worker.files import TrialFiles
    from trainables.core.errors import DataError

    folder = tmp_path / "images"
    folder.mkdir()
    for png in sorted((sample_dir / "training_set").glob("*HC.png"))[:2]:
        shutil.copy(png, folder / png.name)
    cfg = load_config(None, [f"search.pretrain.source={folder}", *TINY[3::2]])
    spec = pretrain_spec(
        StageRunner(cfg, Experiment(str(tmp_path), "x"), "disabled"), "mobilenet_v2"
    )
    assert spec.source_digest and spec.unlabelled_dir == str(folder)
    TrialFiles(spec).prepare()  # the same copy: no complaint
    (folder / png.name).write_bytes(b"another scan")  # this node's copy differs now
    with pytest.raises(DataError, match="pretraining folder differs from the driver's copy"):
        TrialFiles(spec).prepare()


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
