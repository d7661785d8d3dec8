"""One trial end to end: the smoke recipe learns, results land on disk, a crash resumes exactly."""

from pathlib import Path

import pandas as pd
import pytest
from helpers import REPO

from trainables.data.trial_data import load_trial_data
from trainables.nets.resolve import load_trial_config
from trainables.training.run import run_trial

SMOKE = REPO / "configs" / "smoke.yaml"
METRIC_KEYS = {"dice", "iou", "pixel_accuracy", "hd_mm", "hc_abs_diff_mm"}


def check_smoke_result(out: Path, metrics: dict) -> None:
    losses = [epoch["train_loss"] for epoch in metrics["history"]]
    assert losses[-1] < losses[0], f"loss did not fall: {losses}"
    # An empty predicted mask scores Dice 0 on every image that has a head.
    assert metrics["val"]["dice"] > 0.1
    assert metrics["test"]["dice"] > 0.1
    assert set(metrics["val"]) >= METRIC_KEYS and set(metrics["test"]) >= METRIC_KEYS
    for key in ("strategy", "seed", "trainable_params", "total_params", "history"):
        assert key in metrics
    for file in ("metrics.json", "best.pt", "last.pt", "config.yaml", "split.csv"):
        assert (out / file).is_file(), file
    split = pd.read_csv(out / "split.csv")
    assert set(split["split"]) == {"train", "val", "test"}
    per_image = pd.read_csv(out / "test_per_image.csv")
    assert len(per_image) == metrics["split_sizes"]["test"]


@pytest.mark.slow
def test_smoke_trial_on_synthetic_data(synthetic_dir, tmp_path):
    cfg = load_trial_config(SMOKE, [f"data_dir={synthetic_dir}"])
    metrics = run_trial(cfg, tmp_path / "run", verbose=False)
    check_smoke_result(tmp_path / "run", metrics)
    assert metrics["trainable_params"] == 4_404_928


@pytest.mark.slow
@pytest.mark.realdata
def test_smoke_trial_on_real_hc18(real_hc18_dir, tmp_path):
    cfg = load_trial_config(SMOKE, [f"data_dir={real_hc18_dir}"])
    metrics = run_trial(cfg, tmp_path / "run", verbose=False)
    check_smoke_result(tmp_path / "run", metrics)
    print(
        f"smoke on 64 real images @128 px: test dice {metrics['test']['dice']:.3f}, "
        f"HC abs diff {metrics['test']['hc_abs_diff_mm']:.1f} mm"
    )


class Crash(RuntimeError):
    pass


def test_crash_loses_at_most_the_epoch_in_progress_and_resume_is_exact(sample_dir, tmp_path):
    sets = [f"data_dir={sample_dir}", "image_size=32", "epochs=3", "max_images=None"]
    cfg = load_trial_config(SMOKE, sets)
    data = load_trial_data(cfg)
    straight = run_trial(cfg, tmp_path / "straight", data=data, verbose=False)

    written = {}

    def crash_after_epoch_2(record, out_dir, files):
        written[record["epoch"]] = files
        if record["epoch"] == 2:
            raise Crash

    with pytest.raises(Crash):
        run_trial(cfg, tmp_path / "crashed", data=data, on_epoch=crash_after_epoch_2, verbose=False)
    assert not (tmp_path / "crashed" / "metrics.json").exists()
    # The callback learns what each epoch wrote (the trainable uploads only that): best.pt when
    # validation Dice improved, first; last.pt every epoch (checkpoint_every=1).
    dice = [e["val_dice"] for e in straight["history"][:2]]
    assert written[1] == ["best.pt", "last.pt"]
    assert written[2] == (["best.pt", "last.pt"] if dice[1] > dice[0] else ["last.pt"])
    resumed = run_trial(cfg, tmp_path / "crashed", data=data, verbose=False)
    assert [e["epoch"] for e in resumed["history"]] == [1, 2, 3]
    # CPU training is deterministic given the seed: the resumed run ends where the straight one did.
    for a, b in zip(straight["history"], resumed["history"], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
    assert straight["test"]["dice"] == pytest.approx(resumed["test"]["dice"], rel=1e-6)
