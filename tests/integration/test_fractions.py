"""Training-set size as a search axis on a private Ray cluster: the final grid strategy x seed x
share, killed midway and resumed, and the report's learning curves."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
from helpers import TINY, wait_for_trials

from search.report import build_report
from search.report.fractions import (
    CURVES_CSV,
    CURVES_PNG,
)
from trainables.data.splits import train_subset


@pytest.mark.slow
def test_a_study_with_fractions_resumes_without_repeating_a_trial_and_reports_curves(
    ray_cluster, studies, tmp_path
):
    """The final grid strategy x seed x share, killed midway and resumed: no finished trial
    trains again; every row knows its share and images; each result stores its file list,
    which is the seeded nested subset; the report's learning curves equal a recomputation."""
    cluster = ray_cluster(head_cpus=1)
    experiment = tmp_path / "runs" / "curves"
    args = ["--storage", str(tmp_path / "runs"), "--name", "curves", "--stages", "final"]
    args += ["--set", "search.strategies=[decoder_4,decoder_2_3_4]", "--set", "search.seeds=[0,1]"]
    args += ["--set", "search.train_fractions=[0.5,1.0]", "--set", "trial.epochs=3"]
    args += ["--set", "search.max_concurrent_trials=1", *TINY, "--set", "trial.image_size=96"]
    first = studies(cluster.address, args, "first.log")

    def midway(trials: pd.DataFrame) -> bool:
        final = trials[trials.stage == "final"]
        return bool((final.status == "ok").sum() >= 3)

    wait_for_trials(first, experiment, midway, timeout=300)
    first.kill()
    time.sleep(1)
    results = experiment / "results" / "final"
    written = {p.name: p.stat().st_mtime_ns for p in results.glob("*.json")}
    assert 3 <= len(written) < 8

    resumed = studies(cluster.address, [*args, "--resume"], "resume.log")
    assert resumed.wait(600) == 0, resumed.log_tail()
    for name, mtime in written.items():  # a finished trial is not trained (or written) again
        assert (results / name).stat().st_mtime_ns == mtime, name
    trials = pd.read_csv(experiment / "trials.csv")
    final = trials[trials.stage == "final"]
    assert len(final) == 8 and (final.status == "ok").all(), final[["trial_name", "status"]]
    assert sorted(final.trial_name) == sorted(
        f"{s}__{f}seed{k}"
        for s in ("decoder_4", "decoder_2_3_4")
        for f in ("", "f50__")
        for k in (0, 1)
    )
    split = pd.read_csv(experiment / "split.csv")
    train = sorted(split.loc[split.split == "train", "filename"])
    for row in final.itertuples():
        result = json.loads((results / f"{row.trial_name}.json").read_text())
        assert result["train_files"] == train_subset(train, row.train_fraction, row.seed)
        assert row.train_images == len(result["train_files"])
        if row.train_fraction == 1.0:
            assert result["train_files"] == train
    half = final[final.train_fraction == 0.5].set_index(["strategy", "seed"])
    full = final[final.train_fraction == 1.0].set_index(["strategy", "seed"])
    assert (half.train_images < full.train_images).all()
    assert (half.epochs > full.epochs).all()  # the steps budget: more epochs on fewer images

    report = build_report(str(experiment))
    curves = pd.read_csv(report.out_dir / CURVES_CSV)
    assert (report.out_dir / CURVES_PNG).stat().st_size > 0
    recomputed = (
        final.groupby(["train_fraction", "strategy"])
        .agg(dice=("test_dice", "mean"), low=("test_dice", "min"), images=("train_images", "mean"))
        .reset_index()
    )
    merged = curves.merge(recomputed, on=["train_fraction", "strategy"], validate="1:1")
    assert len(merged) == 4
    np.testing.assert_allclose(merged.test_dice_mean, merged.dice)
    np.testing.assert_allclose(merged.test_dice_min, merged.low)
    np.testing.assert_allclose(merged.train_images, merged.images)
    # The main ranking is the whole training split's: one row per strategy, 2 seeds each.
    assert sorted(report.table.strategy) == ["decoder_2_3_4", "decoder_4"]
    text = (report.out_dir / "report.md").read_text()
    assert "## Training-set size (learning curves)" in text and "fraction_budget: steps" in text
